"""Same absl app as the console script tfgen-sample: python bin/sample.py --help."""

from tfgen.apps import sample

if __name__ == "__main__":
  sample.run()
