"""False-alarm rate and detection power of `diffbench compare`'s rule (slowdown > 5 % and
one-sided Mann-Whitney p < 0.01) on synthetic rounds: log-normal noise around 10 ms, A/A
comparisons for false alarms, a 10 % slowdown for power, at several noise levels and round
counts.

    python scripts/speed_detector_rates.py [--trials 10000]
"""
import argparse

import numpy as np

from bench.speed_regression import judge


def rate(rng, trials: int, rounds: int, noise: float, slowdown: float) -> float:
    flagged = 0
    for _ in range(trials):
        base = 0.010 * np.exp(noise * rng.standard_normal(rounds))
        now = 0.010 * slowdown * np.exp(noise * rng.standard_normal(rounds))
        flagged += judge(list(base), list(now))[2] == "regression"
    return flagged / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| rounds | noise (CV) | false alarms (A/A) | power (10 % slower) |")
    print("|---|---|---|---|")
    for rounds in (10, 20):
        for noise in (0.01, 0.03, 0.05, 0.10):
            false_alarms = rate(rng, args.trials, rounds, noise, 1.0)
            power = rate(rng, args.trials, rounds, noise, 1.10)
            print(f"| {rounds} | {noise:.0%} | {false_alarms:.4f} | {power:.4f} |")


if __name__ == "__main__":
    main()
