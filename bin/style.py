"""Same absl app as the console script tfgen-style: python bin/style.py --help."""

from tfgen.apps import style

if __name__ == "__main__":
  style.run()
