#!/usr/bin/env bash
# Debian packages the report tests use: chromium + chromium-driver (index.html in a real
# browser), pdflatex with booktabs and lmodern (tables.tex compiles) and poppler-utils (its
# fonts and sizes). Installs only what is missing; the
# tests that need them are skipped where they are absent.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v pdflatex >/dev/null || missing+=(texlive-latex-base)
kpsewhich booktabs.sty >/dev/null 2>&1 || missing+=(texlive-latex-recommended)
kpsewhich lmodern.sty >/dev/null 2>&1 || missing+=(lmodern)
command -v pdffonts >/dev/null || missing+=(poppler-utils)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "diffbench: installing Debian packages ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
