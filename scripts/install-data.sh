#!/usr/bin/env bash
# Install the data the default config reads: Debian's Fashion-MNIST (idx files under
# /usr/share/datasets/fashion-mnist). Without root or apt, say how to get it instead.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's dataset-fashion-mnist ..."
  apt-get install -y -q dataset-fashion-mnist >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  exit 0
fi
cat >&2 <<MSG
Fashion-MNIST is not in $dir and this user cannot run apt-get.
Either install Debian's package 'dataset-fashion-mnist', or point the config at another copy:
  datasets: {fashion_mnist: {source: torchvision, name: FashionMNIST, path: resources/torchvision}}
(see config/README.md).
MSG
exit 1
