"""Same absl app as the console script tfgen-tune: python bin/tune.py --help."""

from tfgen.apps import tune

if __name__ == "__main__":
  tune.run()
