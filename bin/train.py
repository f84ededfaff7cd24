"""Same absl app as the console script tfgen-train: python bin/train.py --help."""

from tfgen.apps import train

if __name__ == "__main__":
  train.run()
