"""Same absl app as the console script tfgen-evaluate: python bin/evaluate.py --help."""

from tfgen.apps import evaluate

if __name__ == "__main__":
  evaluate.run()
