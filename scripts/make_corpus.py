#!/usr/bin/env python3
"""Writes a deterministic synthetic clinical corpus for benchmarks and a second labelled set.

    python3 scripts/make_corpus.py [--bytes 1200000]

Outputs crates/phi/benches/data/clinical_notes.jsonl ({"id","text"}) and
clinical_notes.gold.jsonl (the same with "spans": code-point offsets, end-exclusive).
Every name, number and place is invented here; nothing comes from a real record or from the
development data.
"""
import argparse, json, os, random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "phi", "benches", "data")

GIVEN = ["Harriet", "Desmond", "Imogen", "Rafael", "Beatrix", "Lionel", "Marisol", "Cedric", "Yolanda", "Thaddeus",
         "Winifred", "Gustavo", "Ottilie", "Bartholomew", "Rosalind", "Emeka", "Svetlana", "Ignatius", "Perpetua", "Anselm"]
SURN = ["Featherstone", "Okonkwo", "Vasquez-Ruiz", "Lindqvist", "Abernathy", "Castellanos", "O'Rourke", "Pemberton",
        "Nakamura", "Delacroix", "Whitcombe", "Szymanski", "Oyelaran", "Hargreaves", "Quintero", "Balasubramanian"]
CITIES = [("Tucson", "AZ"), ("Albany", "NY"), ("Boise", "ID"), ("Dayton", "OH"), ("Spokane", "WA"), ("Macon", "GA"),
          ("Billings", "MT"), ("Fresno", "CA"), ("Knoxville", "TN"), ("Lansing", "MI")]
FAC = ["Briarwood Medical Center", "St. Ottilie's Hospital", "Harborview Clinic", "Mt. Ashby Regional Hospital",
       "Copperleaf Health Center", "Saint Brendan Medical Center", "Lakeshore Family Practice"]
STREETS = ["Juniper Ave", "Old Mill Rd", "Kestrel Lane", "Larkspur Blvd", "Quarry Street", "Foxglove Dr"]
RELS = ["daughter", "son", "wife", "husband", "sister", "niece"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]

CLINICAL = [
    "Continue metoprolol 25 mg PO BID and lisinopril 10 mg daily.",
    "BP 128/76, HR 84, RR 18, SpO2 97% on RA, temp 98.4.",
    "Labs: Na 138, K 4.1, Cl 102, CO2 24, BUN 18, Cr 1.1, glucose 142, ALK PHOS 112, AST 31, ALT 28.",
    "History of Parkinson's disease and type 2 diabetes diagnosed in 2014.",
    "Foley catheter removed, voiding spontaneously. Gram stain of sputum negative.",
    "Strength 5/5 in all extremities, GCS 15, no focal deficits.",
    "Epinephrine 1:1000 available at bedside. Take 1/2 tab of oxycodone 5/325 q6h PRN pain.",
    "CXR with mild bibasilar atelectasis, no effusion. EKG NSR without ST changes.",
    "Plan: increase furosemide to 40 mg IV BID, strict I/Os, daily weights, fluid restriction 1.5 L.",
    "Wells score 1, Gleason score 7 on prior biopsy, CHADS2-VASc 3.",
    "Patient tolerating diet, ambulating with walker, pain controlled on acetaminophen 650 mg q6h.",
    "HbA1c 8.2%, LDL 96, TSH 2.3. Continue atorvastatin 40 mg nightly.",
]
CAPS = [
    "PT RESTING COMFORTABLY, VSS, NAD. SKIN WARM AND DRY. IV SITE CLEAN, DRY AND INTACT.",
    "ASSISTED TO BSC X2, TOLERATED WELL. FALL PRECAUTIONS IN PLACE, BED ALARM ON.",
    "DENIES CP/SOB. LUNGS CTA BILAT. ABD SOFT, NT/ND, +BS X4. FOLEY DRAINING CLEAR YELLOW URINE.",
    "MEDICATED WITH TYLENOL 650 MG PO FOR PAIN 4/10 WITH RELIEF. WILL CONTINUE TO MONITOR.",
]


class Doc:
    def __init__(self):
        self.parts, self.spans, self.pos = [], [], 0

    def add(self, s):
        self.parts.append(s)
        self.pos += len(s)

    def phi(self, s, cat):
        self.spans.append({"start": self.pos, "end": self.pos + len(s), "category": cat, "text": s})
        self.add(s)

    def text(self):
        return "".join(self.parts)


def date(r):
    m, d, y = r.randint(1, 12), r.randint(1, 28), r.randint(2015, 2025)
    return r.choice([f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{MONTHS[m-1]} {d}, {y}",
                     f"{MONTHS[m-1][:3]} {d}", f"{y}-{m:02d}-{d:02d}", f"{d}-{MONTHS[m-1][:3]}-{y}"])


def phone(r):
    return f"({r.randint(201, 989)}) 555-{r.randint(100, 199):04d}"


def note(r, i, caps):
    d = Doc()
    g, s = r.choice(GIVEN), r.choice(SURN)
    up = (lambda x: x.upper()) if caps else (lambda x: x)
    if caps:
        d.add("NURSING NOTE ")
        d.phi(date(r).upper(), "DATE")
        d.add(". PT ")
        d.phi(f"{g} {s}".upper(), "NAME")
        d.add(f" IS A {r.randint(40, 88)} YO WITH CHF. ")
        for _ in range(r.randint(6, 14)):
            d.add(r.choice(CAPS) + " ")
            if r.random() < 0.25:
                d.add(f"{r.choice(RELS).upper()} ")
                d.phi(f"{r.choice(GIVEN)} {r.choice(SURN)}".upper(), "NAME")
                d.add(" AT BEDSIDE, UPDATED ON PLAN OF CARE. ")
            if r.random() < 0.15:
                d.add("SEEN BY ")
                d.phi(f"DR {r.choice(SURN).upper()}", "NAME")
                d.add(" THIS AM. ")
        d.add("CALL BACK NUMBER ")
        d.phi(phone(r), "PHONE")
        d.add(".\n")
        return d
    kind = r.choice(["progress", "discharge", "question"])
    if kind == "question":
        age = r.choice([str(r.randint(20, 88)) + "-year-old", None])
        d.add("What is the best next step for ")
        d.phi(f"{g} {s[0]}.", "NAME") if r.random() < 0.5 else d.phi(f"{g} {s}", "NAME")
        if age:
            d.add(f", a {age} with CKD stage 3,")
        else:
            d.add(", a ")
            d.phi(f"{r.randint(90, 99)} yo", "AGE")
            d.add(" woman with CKD stage 3,")
        d.add(" seen at ")
        d.phi(r.choice(FAC), "LOCATION")
        d.add(" on ")
        d.phi(date(r), "DATE")
        d.add(" (MRN: ")
        d.phi(f"{r.randint(10000000, 99999999)}", "MRN")
        d.add(")? " + r.choice(CLINICAL) + "\n")
        return d
    d.add("PROGRESS NOTE\n" if kind == "progress" else "DISCHARGE SUMMARY\n")
    d.add("Patient: ")
    d.phi(f"{s}, {g}", "NAME")
    d.add("    MRN: ")
    d.phi(f"{r.randint(1000000, 9999999)}", "MRN")
    d.add("    DOB: ")
    d.phi(date(r), "DATE")
    d.add("\nAttending: ")
    d.phi(f"Dr. {r.choice(GIVEN)} {r.choice(SURN)}", "NAME")
    d.add("\n\n")
    for _ in range(r.randint(8, 18)):
        d.add(r.choice(CLINICAL) + " ")
        x = r.random()
        if x < 0.12:
            d.add(f"Spoke with {r.choice(RELS)} ")
            d.phi(r.choice(GIVEN), "NAME")
            d.add(" at ")
            d.phi(phone(r), "PHONE")
            d.add(". ")
        elif x < 0.2:
            c, st = r.choice(CITIES)
            d.add("Lives at ")
            d.phi(f"{r.randint(10, 9999)} {r.choice(STREETS)}", "LOCATION")
            d.add(", ")
            d.phi(f"{c}, {st}", "LOCATION")
            d.add(". ")
        elif x < 0.26:
            d.add("Follow up on ")
            d.phi(date(r), "DATE")
            d.add(" at ")
            d.phi(r.choice(FAC), "LOCATION")
            d.add(". ")
        elif x < 0.3:
            d.add("Records faxed to ")
            d.phi(f"{r.randint(201, 989)}-555-{r.randint(100, 199):04d}", "FAX")
            d.add(". ")
        elif x < 0.33:
            d.add("Insurance member ID ")
            d.phi(f"{r.choice('ABCDEFGH')}{r.choice('KLMNPQ')}{r.randint(100000000, 999999999)}", "HEALTH_PLAN")
            d.add(". ")
        elif x < 0.36:
            d.add("Portal message from ")
            d.phi(f"{g.lower()}.{s.lower().replace(chr(39), '')}@example.net", "EMAIL")
            d.add(". ")
        elif x < 0.38:
            d.add("She is in her ")
            d.phi("90s", "AGE")
            d.add(". ")
    d.add("\n")
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bytes", type=int, default=1_200_000)
    args = ap.parse_args()
    r = random.Random(20261122)
    os.makedirs(OUT, exist_ok=True)
    total, i = 0, 0
    with open(os.path.join(OUT, "clinical_notes.jsonl"), "w") as f, open(os.path.join(OUT, "clinical_notes.gold.jsonl"), "w") as g:
        while total < args.bytes:
            d = note(r, i, caps=r.random() < 0.3)
            t = d.text()
            for sp in d.spans:
                assert t[sp["start"]:sp["end"]] == sp["text"]
            f.write(json.dumps({"id": f"syn-{i:05d}", "text": t}) + "\n")
            g.write(json.dumps({"id": f"syn-{i:05d}", "text": t, "spans": d.spans}) + "\n")
            total += len(t.encode())
            i += 1
    print(f"{i} notes, {total} bytes of text")


if __name__ == "__main__":
    main()
