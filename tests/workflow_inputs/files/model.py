"""The library of the documented @library examples: one function, evaluate."""


def evaluate(trained, test, score):
    with open(score, "w") as out:
        out.write(f"{len(open(trained).read())} {len(open(test).read())}\n")
