"""Writes breast_cancer.csv, wine.csv and diabetes.csv from the tables scikit-learn's wheel ships.

    python -m pip install scikit-learn==1.9.1
    python data/tables/make_tables.py

scikit-learn stores them without a header row (breast cancer, wine) or without column names
(diabetes, two files); this writes each as one CSV file with a header row, the values as
scikit-learn stores them, and the target as the last column. The SHA-256 of the inputs and
outputs are in README.md beside this script.
"""

import csv
import gzip
import hashlib
import os

import sklearn
from sklearn import datasets

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(os.path.dirname(datasets.__file__), "data")


def write(name, header, rows):
    path = os.path.join(HERE, name)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    print(name, len(rows), "rows", hashlib.sha256(open(path, "rb").read()).hexdigest())


def headerless(file, names, target_name, labels):
    """sklearn's `n_samples,n_features,<class names>` first line, then features and a class index."""
    with open(os.path.join(SOURCE, file)) as f:
        lines = list(csv.reader(f))
    rows = [r[:-1] + [labels(r[-1])] for r in lines[1:]]
    write(file.replace("_data", ""), list(names) + [target_name], rows)


def main():
    print("scikit-learn", sklearn.__version__)
    cancer = datasets.load_breast_cancer()
    # The target as text: 0 is malignant, 1 benign in scikit-learn's encoding.
    names = list(cancer.target_names)
    headerless("breast_cancer.csv", cancer.feature_names, "diagnosis", lambda t: names[int(t)])
    wine = datasets.load_wine()
    headerless("wine_data.csv", wine.feature_names, "cultivar", lambda t: t)
    diabetes = datasets.load_diabetes(scaled=False)
    with gzip.open(os.path.join(SOURCE, "diabetes_data_raw.csv.gz"), "rt") as f:
        x = [line.split() for line in f if line.strip()]
    with gzip.open(os.path.join(SOURCE, "diabetes_target.csv.gz"), "rt") as f:
        y = [str(int(float(line))) for line in f if line.strip()]
    assert len(x) == len(y) == 442
    write("diabetes.csv", list(diabetes.feature_names) + ["progression"], [a + [b] for a, b in zip(x, y)])


if __name__ == "__main__":
    main()
