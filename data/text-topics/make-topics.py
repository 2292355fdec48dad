# Makes topics.csv: 150 short generated texts on three topics (50 each), label,text. Seeded, so the
# file is reproducible: python3 make-topics.py > topics.csv
import random
rng = random.Random(4711)
topics = {
    "sport": "ball goal team match score coach league player referee stadium".split(),
    "food": "bread soup cheese apple salt bake cook sugar recipe kitchen".split(),
    "tech": "code disk byte chip screen cable linux kernel server compiler".split(),
}
shared = "the a of and to is with my this".split()
print("label,text")
for i in range(50):
    for name, words in topics.items():
        n = rng.randint(5, 10)
        print(name + "," + " ".join(rng.choice(words) if rng.random() < 0.7 else rng.choice(shared) for _ in range(n)))
