"""Same absl app as the console script tfgen-cppn: python bin/cppn.py --help."""

from tfgen.apps import cppn

if __name__ == "__main__":
  cppn.run()
