"""Regenerate ``reviews.jsonl``: 200 synthetic product reviews, the same every run.

    python jobs/data/make_reviews.py > jobs/data/reviews.jsonl

Each line is ``{"id": INT, "product": STRING, "rating": INT, "review": STRING}`` with ids 1..200.
A few rows carry what a real feed carries: a NULL review (id 17), quotes, brackets,
backslashes and non-ASCII text, so the jobs' row-by-row checks cover them.
"""
from __future__ import annotations

import json
import random
import sys

PRODUCTS = ["kettle", "headphones", "backpack", "desk lamp", "coffee grinder", "running shoes",
            "phone case", "blender", "e-reader", "yoga mat"]
OPENINGS = {
    5: ["Absolutely love this {p}.", "Best {p} I have owned.", "Five stars for this {p}!"],
    4: ["Really good {p}.", "Solid {p}, happy with it.", "The {p} does what it promises."],
    3: ["The {p} is okay.", "Mixed feelings about this {p}.", "An average {p}, nothing special."],
    2: ["Disappointed with the {p}.", "The {p} feels cheap.", "Not great: the {p} wobbles."],
    1: ["Terrible {p}.", "The {p} stopped working after a week.", "Do not buy this {p}."],
}
DETAILS = ["Shipping took {d} days.", "Setup took {d} minutes.", "I have used it {d} times so far.",
           "Battery lasts about {d} hours.", "Customer service answered in {d} hours.",
           "It is quieter than my old one.", "The colour is not what the photo shows.",
           "Would buy again.", "Returned it.", "Gave one to my sister too."]
SPECIAL = {  # id -> review text that exercises escaping and Unicode on every path
    5: 'Says "waterproof" on the box. It is not.',
    23: "Rated [4/5] by my kids] and a backslash \\ for good measure.",
    42: "Très bien, das ist gut, とても良い 👍",
    77: "Comma, semicolon; colon: all fine.",
    101: "   leading and trailing spaces   ",
    150: "Line one\nline two of a multi-line review.",
}
NULL_REVIEW_ID = 17
COUNT = 200


def reviews(seed: int = 2024) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for review_id in range(1, COUNT + 1):
        product = rng.choice(PRODUCTS)
        rating = rng.randint(1, 5)
        text = " ".join([rng.choice(OPENINGS[rating]).format(p=product),
                         *(rng.choice(DETAILS).format(d=rng.randint(2, 30))
                           for _ in range(rng.randint(1, 2)))])
        text = SPECIAL.get(review_id, text)
        if review_id == NULL_REVIEW_ID:
            text = None
        rows.append({"id": review_id, "product": product, "rating": rating, "review": text})
    return rows


def main() -> int:
    for row in reviews():
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
