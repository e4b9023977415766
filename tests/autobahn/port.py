"""Turn the Python 2 source of autobahntestsuite into Python 3 source, in place.

Usage: python port.py SUITE_DIR LIBRARY_DIR
(the unpacked sdists of autobahntestsuite and autobahn; both are rewritten in place)

The suite treats a Python 2 `str` as raw octets everywhere. The port keeps that
model instead of converting every literal to `bytes`: an octet string stays a
`str` whose code points are its octets (the latin-1 view), and the few places
where octets meet the real Python 3 world (the wire, hex dumps, JSON) convert at
run time in shims.py. So the source steps are only:

1. CRLF to LF (some files are CRLF, and the edits of step 4 match on `\n`);
2. plain string literals that hold non-ASCII text become \\x escapes of their
   UTF-8 octets, which is what Python 2 saw under `# coding=utf-8`;
3. lib2to3 with its default fixers (print, except, dict views, imports, ...);
4. a short list of edits lib2to3 cannot know about (integer division, old-style
   classes, zope's `implements`, text reports, the imports of shims.py), each
   with its expected number of matches, so a changed upstream file fails loudly.
"""

import glob
import os
import re
import sys

PACKAGE = "autobahntestsuite"

# (file, pattern, replacement, expected number of matches). A count that does not
# match means the sdist is not the pinned one: stop rather than half-port it.
EDITS = [
    # Python 2 `/` on ints floors; these feed a frame count and a slice.
    ("case/case10_1_1.py", r"len\(self\.payload\) / ", "len(self.payload) // ", 1),
    ("util.py", r"c1 = l / 2", "c1 = l // 2", 1),
    # The wire log joins the octets of a received frame.
    ("fuzzing.py", r"''\.join\(payload\)", "b''.join(payload)", 1),
    # Hex dumps take and give the suite's octet strings (shims.binascii).
    ("fuzzing.py", r"json, binascii, time", "json, time", 1),
    ("fuzzing.py", r"\A", "from .shims import binascii\n", 1),
    ("case/*.py", r"(?m)^(\s*)import binascii$", r"\1from autobahntestsuite.shims import binascii", 14),
    ("case/case12_x_x.py", r"hashlib, binascii\n", "hashlib\nfrom autobahntestsuite.shims import binascii\n", 1),
    # Case was an old-style class, so `object` could come first among the bases of
    # the generated cases; with new-style classes that order has no MRO.
    ("case/*.py", r"\(object, Case, \)", "(Case, )", 6),
    # zope.interface dropped the class-body `implements()` for the decorator.
    ("case/case9_9_1.py", r"import implements\n", "import implementer\n", 1),
    ("case/case9_9_1.py", r"class FrameProducer:\n\n\s*implements\((.*)\)\n",
     r"@implementer(\1)\nclass FrameProducer:\n", 1),
    # The UTF-8 case generator validates its own octet strings.
    ("case/case6_x_x.py", r"from autobahn\.websocket\.utf8validator import Utf8Validator",
     "from autobahntestsuite.shims import Utf8Validator", 1),
    # The reports are text files: write text, as UTF-8 whatever the locale.
    ("fuzzing.py", r"(c\[0\], case\[c\[0\]\], c\[1\]\)\))\.encode\(\"utf-8\"\)", r"\1", 1),
    ("fuzzing.py", r"ll\.encode\('utf8'\)", "ll", 1),
    ("fuzzing.py", r"(open\(os\.path\.join\(outdir, report_filename\), 'w')\)", r"\1, encoding='utf-8')", 4),
    # Install the border conversions once the protocol and the cases exist.
    ("fuzzing.py", r"\Z", "\nfrom .shims import install as _install_shims\n_install_shims()\n", 1),
]

# The same for autobahn 0.10.9 itself, which already runs on Python 3 but for these.
LIBRARY_EDITS = [
    # wstest imports the serializer tests; unittest2 was a backport for Python 2.6.
    ("wamp/test/test_serializer.py", r"import unittest2 as unittest", "import unittest", 1),
    # A repeated payload (the 9.* cases) is counted with Python 2's floor division.
    ("websocket/protocol.py", r"range\(payload_len / len\(payload\)\)", "range(payload_len // len(payload))", 1),
]


def python_files(root):
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def normalise_newlines(path):
    with open(path, "rb") as f:
        data = f.read()
    if b"\r" in data:
        with open(path, "wb") as f:
            f.write(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))


def escape_non_ascii(path):
    """Non-ASCII characters only occur inside plain (octet) literals in this suite."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.isascii():
        return
    out = []
    for line in text.splitlines(keepends=True):
        if line.isascii() or line.lstrip().startswith("#"):
            out.append(line)
            continue
        if re.search(r"""\bu["']""", line):
            sys.exit(f"port: unicode literal with non-ASCII text in {path}; rule does not apply")
        out.append("".join(c if c.isascii() else "".join(f"\\x{b:02x}" for b in c.encode()) for c in line))
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(out))


def run_lib2to3(package_dir):
    import warnings

    warnings.simplefilter("ignore")
    from lib2to3 import refactor

    fixers = refactor.get_fixers_from_package("lib2to3.fixes")
    tool = refactor.RefactoringTool(fixers, {"print_function": False})
    tool.refactor([package_dir], write=True)
    if tool.errors:
        sys.exit(f"port: lib2to3 failed: {tool.errors[:3]}")


def apply_edits(package_dir, edits):
    for pattern_path, pattern, replacement, expected in edits:
        total = 0
        for path in sorted(glob.glob(os.path.join(package_dir, pattern_path))):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            new, n = re.subn(pattern, replacement, text)
            total += n
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
        if total != expected:
            sys.exit(f"port: {pattern!r} in {pattern_path} matched {total} times, want {expected}")


def main():
    src, library = sys.argv[1:3]
    apply_edits(os.path.join(library, "autobahn"), LIBRARY_EDITS)
    package_dir = os.path.join(src, PACKAGE)
    files = list(python_files(package_dir))
    for path in files:
        normalise_newlines(path)
        escape_non_ascii(path)
    run_lib2to3(package_dir)
    apply_edits(package_dir, EDITS)
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "shims.py"), encoding="utf-8") as f:
        shims = f.read()
    with open(os.path.join(package_dir, "shims.py"), "w", encoding="utf-8") as f:
        f.write(shims)


if __name__ == "__main__":
    main()
