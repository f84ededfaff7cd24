"""Same absl app as the console script tfgen-export: python bin/export.py --help."""

from tfgen.apps import export

if __name__ == "__main__":
  export.run()
