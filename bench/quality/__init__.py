"""Quality of samples: feature extractors, metrics, streaming scores, statistics, fidelity (PSNR / SSIM) and paired comparisons."""
