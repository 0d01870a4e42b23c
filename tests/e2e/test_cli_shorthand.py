"""test_cli_shorthand - the shorthand parser of `kms` against the AWS CLI's.

Users paste `--tags TagKey=env,TagValue=prod` and the like from commands
written for the AWS CLI, so lib/cli/shorthand.c must read every value into
the structure the AWS CLI's syntactic parser (awscli.shorthand.
ShorthandParser, before any model is applied) builds, and refuse what it
refuses.  The parser is driven through tests/cli/shorthand_driver.c, the
reference is called in this process, on a hand-written corpus (every
construct, the AWS documentation's examples for KMS parameters, malformed
values) and on generated values from an alphabet of the syntax's delimiters,
quotes, backslashes, whitespace, letters and non-ASCII characters.

Accepted values must be equal as data.  Refused values must be refused by
both, at the same place (the reference counts characters, the driver bytes:
converted), with the same message.  The installed AWS CLI v1 forgets the
`f` of one f-string, so its syntax errors read "...for input:\\n
{self._error_location()}" literally; the message compared is then the one
it means to print, built from the error's own fields.

Values after `key@=` are file-optional: the reference would read file://
paths there.  Both sides mark such values instead (the reference through its
one resolving method, the driver through the parser's callback), so the test
also checks which values are handed to the caller.
"""

import json
import os
import random
import subprocess
import unittest

try:
    from awscli.shorthand import (DuplicateKeyInObjectError, ShorthandParser,
                                  ShorthandParseSyntaxError)
except ImportError:  # pragma: no cover - the CI image has awscli
    ShorthandParser = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("KMSD_BUILD_DIR", os.path.join(REPO, "build"))
DRIVER = os.path.join(BUILD, "cli_shorthand_driver")

# Deepest nesting the parser accepts (CLI_SHORTHAND_MAX_DEPTH).
MAX_DEPTH = 64


def _mark(value):
    return "<@" + value + ">"


class _MarkingParser(ShorthandParser if ShorthandParser else object):
    """The reference, with file-optional values marked rather than read."""

    def _resolve_paramfiles(self, val):
        return _mark(val)


def reference(text, marking):
    """('ok', data) or ('error', kind, byte offset, message)."""
    parser = _MarkingParser() if marking else ShorthandParser()
    if not marking:
        parser._resolve_paramfiles = lambda val: val
    try:
        return ("ok", parser.parse(text))
    except ShorthandParseSyntaxError as e:
        msg = (f"Expected: '{e.expected}', received: '{e.actual}' for input:\n"
               f"{e._error_location()}")
        return ("error", "syntax", len(text[:e.index].encode()), msg, str(e))
    except DuplicateKeyInObjectError as e:
        return ("error", "duplicate", len(text[:e.index].encode()), str(e), str(e))
    except RecursionError:
        return ("error", "limit", None, None, None)


def run_driver(inputs, marking):
    cmd = [DRIVER] + (["--mark"] if marking else [])
    data = "".join(json.dumps(t) + "\n" for t in inputs).encode()
    proc = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"driver failed: {proc.stderr.decode(errors='replace')}")
    # Split on "\n" only: values may hold U+2028 and the like unescaped.
    rows = [json.loads(line) for line in proc.stdout.decode().split("\n")[:-1]]
    if len(rows) != len(inputs):
        raise AssertionError(f"driver printed {len(rows)} rows for {len(inputs)} inputs")
    return rows


def nesting(text):
    depth = best = 0
    for c in text:
        if c in "[{":
            depth += 1
            best = max(best, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
    return best


# ---- the hand-written corpus -----------------------------------------------

DOCS = [
    # TagResource, CreateKey --tags (the AWS documentation's examples).
    "TagKey=Purpose,TagValue=Test",
    "TagKey=env,TagValue=prod",
    "TagKey=CostCenter,TagValue=87654",
    "TagKey=Project,TagValue=\"Alpha Beta\"",
    "TagKey='Team Name',TagValue='Security, Platform'",
    # CreateGrant --constraints / --grant-constraints.
    "EncryptionContextSubset={Department=IT}",
    "EncryptionContextSubset={Department=IT,Project=Alpha}",
    "EncryptionContextEquals={Purpose=Test}",
    "EncryptionContextSubset={k1=v1,k2=v2}",
    "EncryptionContextEquals={\"aws:ebs:id\"=vol-1234567890abcdef0}",
    "EncryptionContextEquals={aws:ebs:id=vol-1234567890abcdef0}",
    "EncryptionContextSubset={}",
    # Encrypt / Decrypt --encryption-context (a map).
    "Department=IT",
    "Department=IT,Purpose=Test",
    "purpose=test,dept=finance",
    "aws:cloudtrail:arn=arn:aws:cloudtrail:us-west-2:111122223333:trail/my-trail",
    "aws-crypto-public-key=AoHP3mGrjABrA0F7Q5WcoS/M6dn+Np9P1/h2d3J8ca+F",
    "key/with/slashes=value#1",
    # CreateCustomKeyStore / UpdateCustomKeyStore --xks-proxy-authentication-credential.
    "AccessKeyId=ABCDE12345670EXAMPLE,RawSecretAccessKey=DXjSUawnel2fr6SKC7G25CNxTyWKE5PF9XX6H/u9pSo=",
    "AccessKeyId=BLKLPNB52Q7FGHOAAXJK,RawSecretAccessKey=BzSHJvrmRFvEUUq3YrPwY5Gd5Qmq5Y2pLsyCRhgNtp0=",
    "AccessKeyId=\"ABCDE12345670EXAMPLE\",RawSecretAccessKey=\"DXjSUawnel2fr6SKC7G25CNxTyWKE5PF9XX6H/u9pSo=\"",
    # ReEncrypt / GenerateDataKey --encryption-context, --grant-tokens lists.
    "Name=Value,Other=[a,b,c]",
    "Operations=[Encrypt,Decrypt,GenerateDataKey]",
    "Operations=Encrypt,Decrypt,GenerateDataKey",
    "KeyId=1234abcd-12ab-34cd-56ef-1234567890ab,GrantTokens=[AQpAM2RhZ,AQpAM2RhZ2]",
    # Recipient (KMS on Nitro Enclaves).
    "KeyEncryptionAlgorithm=RSAES_OAEP_SHA_256,AttestationDocument=fileb://att.bin",
    "KeyEncryptionAlgorithm=RSAES_OAEP_SHA_256,AttestationDocument@=fileb://att.bin",
    # Filters-like and nested structures.
    "Key=Name,Values=[a,b]",
    "Name=tag:Owner,Values=[alice,bob]",
    "a={b={c={d=e}}}",
    "a=[{k=v},{k=w}]",
    "a=[[x,y],[z]]",
]

CONSTRUCTS = [
    # Scalars and csv lists.
    "a=b", "a=b,c=d", "a=b,c", "a=b,c,d", "a=b,c,d=e", "a=b,c,d=e,f", "a=", "a=,b=c", "=b",
    "a=b,=c", "a=b c", "a=b  ", "a= b", "a =b", "a = b", " a=b", "a=b ,c=d", "a=b, c=d",
    "a=b ,c", "a=b, c", "a=b,c ", "a=b,c ,d", "a.b=c", "a-b_c.d#e/f:g=h", "a=b=c", "a==b",
    "a=b,,c", "a=,", "a=b,", "a=b, ", "a=b,c,", ",a=b", "a=b,,", "a", "", " ", "a=b,a=c",
    "a=b,c=d,a=e", "a=[x],a=[y]", "a={},a={}", "a=1,b=2,c=3,b=4", "A=b,a=c",
    "a=b\tc", "a=b\nc", "a=b,\nc=d", "a=b\n,c=d", "a=b,\n\nc=d", "a\n=b", "a=\nb",
    # Escaped commas and backslashes.
    "a=b\\,c", "a=b\\,c,d", "a=\\,", "a=\\,b", "a=b\\", "a=b\\\\,c", "a=b,c\\,d", "a=b,c\\,d=e",
    "a=b,c\\,d,e=f", "a=\\\\", "a=b\\nc", "a=\\'x", "a=\\\"x", "a=b,\\,c", "a=x\\,",
    # Quoted values.
    "a='b'", "a=\"b\"", "a='b,c'", "a=\"b,c\"", "a='b\\'c'", "a=\"b\\\"c\"", "a='b\"c'",
    "a=\"b'c\"", "a='b\\\\c'", "a=\"b\\\\c\"", "a='b\\\\'", "a='a\\'", "a='a\\'b", "a='",
    "a=\"", "a='abc", "a=\"abc", "a=''", "a=\"\"", "a='' ", "a='b' ", "a='b' c", "a='b'c",
    "a='b',c='d'", "a='b','c'", "a=b,'c'", "a=b,'c,d'", "a=b,'c',d", "a=b,'c'=d", "a=b,'c",
    "a=b,\"c", "a='\\\\\\''", "a='x\\'y\\'z'", "a='x\\'y\\'", "a='\n'", "a='x y '",
    "a=[\"x,y\",'z']", "a={b='c,d'}", "a={b=\"c\\\"d\"}", "a='b'\n", "a=\"b\"\t,c=d",
    # Explicit lists.
    "a=[]", "a=[ ]", "a=[b]", "a=[b,c]", "a=[ b , c ]", "a=[b,]", "a=[,b]", "a=[,]", "a=[b c]",
    "a=[[b]]", "a=[[]]", "a=[[],[]]", "a=[b,[c,d]]", "a=[{b=c}]", "a=[b", "a=[b,", "a=[", "a=]",
    "a=[b]c", "a=[b] ", "a=[b],c=d", "a=[b] ,c=d", "a=[b]\n,c=d", "a=[b=c]", "a=[b[c]", "a=[b{c]",
    "a=[b}]", "a=[b]]", "a=[b\\,c]", "a=['b']", "a=['b' ,c]", "a=['b'c]", "a=[b, ,c]",
    # Hash literals.
    "a={}", "a={ }", "a={b=c}", "a={b=c,d=e}", "a={ b = c , d = e }", "a={b=c,}", "a={b=[c,d]}",
    "a={b={c=d}}", "a={b=c,b=d}", "a={b}", "a={b=}", "a={=c}", "a={b=c", "a={b=c,", "a={",
    "a=}", "a={b=c}d", "a={b=c} ", "a={b=c d}", "a={b=c,d}", "a={b c=d}", "a={b@=c}",
    "a={b=c=d}", "a={b=[}", "a={b={}}", "a={b=c}]", "a={,}", "a={b=c,,d=e}", "a={b='c'}",
    # File-optional values.
    "a@=b", "a @= b", "a@ =b", "a@=file://x", "a@=fileb://x", "a@=b,c", "a@=b,c=d", "a@=[b,c]",
    "a@={b=c}", "a@={b@=c}", "a@=[{b=c},d]", "a=[{b@=c},d]", "a@=", "a@=''", "a@=\"x\"",
    "a@=[,x]", "a@=b,c@=d", "a@=b,c=d,e@=f", "a@@=b", "@=b", "a@b=c", "a@", "a@=b,'c'",
    "a@={b=c,d@=e},f=g", "a=[{b@=c},{d=e},f]", "a@=[[b],c]",
    # Non-ASCII characters.
    "a=é", "é=a", "a=日本語", "a=b,日本=c", "a=😀", "a=b😀", "a=b,😀", "a='😀'", "a=[😀]",
    "a=\u00a0", "a=b\u00a0", "a=b\u3000c", "a=b\u2028", "a=\u0085b", "a=b,\u00a0", "a=b\x1f",
    "a=b\x01", "a=\x7f", "a=b,c\u3000", "a={b=c\u00a0}", "a=[b\u00a0,c]", "a=\uffff",
    "a=b\U00010000c", "a=b\r\nc=d", "a=b,\r\nc=d", "a=\u2028", "a=[\ud7ff]",
]


# More of the same, written as users write them: several keys, nesting,
# quoting and whitespace mixed, and the mistakes the CLI's messages point at.
MORE = [
    "TagKey=Purpose,TagValue=Test,TagKey=Env,TagValue=Prod",
    "TagKey=Purpose,TagValue=Test TagKey=Env,TagValue=Prod",
    "TagKey=Name,TagValue=\"My key, the first\"",
    "TagKey=Name,TagValue=My key\\, the first",
    "TagKey=Name,TagValue='it\\'s mine'",
    "TagKey=empty,TagValue=",
    "TagKey=empty,TagValue=''",
    "TagKey=ünïcödé,TagValue=värde",
    "TagKey=Owner,TagValue=alice@example.com",
    "TagKey=path,TagValue=/a/b/c",
    "TagKey=url,TagValue=https://example.com/x?y=1&z=2",
    "TagKey=eq,TagValue=a=b",
    "TagKey=json,TagValue={\"a\":1}",
    "TagKey=list,TagValue=[1,2]",
    "EncryptionContextSubset={Department=IT},EncryptionContextEquals={Purpose=Test}",
    "EncryptionContextSubset={Department=IT,Department=HR}",
    "EncryptionContextSubset={\"Department\"=IT}",
    "EncryptionContextSubset={Department='IT, HR'}",
    "EncryptionContextSubset={Department=\"IT\\\"s\"}",
    "EncryptionContextSubset={ Department = IT , Project = Alpha }",
    "EncryptionContextSubset={Department=IT Project=Alpha}",
    "EncryptionContextSubset={Department=IT;Project=Alpha}",
    "EncryptionContextSubset=Department=IT",
    "EncryptionContextSubset={Department=IT",
    "EncryptionContextSubset={Department=IT}}",
    "EncryptionContextSubset={aws:s3:arn=arn:aws:s3:::bucket/key}",
    "EncryptionContextSubset={aws:s3:arn=arn:aws:s3:::bucket/a b}",
    "AccessKeyId=ABCDE12345670EXAMPLE, RawSecretAccessKey=DXjSUawnel2fr6SKC7G25CNxTyWKE5PF9XX6H/u9pSo=",
    "AccessKeyId=ABCDE12345670EXAMPLE,\nRawSecretAccessKey=DXjSUawnel2fr6SKC7G25CNxTyWKE5PF9XX6H/u9pSo=",
    "AccessKeyId=ABCDE12345670EXAMPLE,RawSecretAccessKey=a+b/c==",
    "AccessKeyId=ABCDE12345670EXAMPLE,RawSecretAccessKey==abc",
    "AccessKeyId=ABCDE12345670EXAMPLE,AccessKeyId=OTHER",
    "AccessKeyId=ABCDE12345670EXAMPLE,RawSecretAccessKey@=file://secret.txt",
    "AliasName=alias/ExampleAlias,TargetKeyId=1234abcd-12ab-34cd-56ef-1234567890ab",
    "KeyId=arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "KeyId=alias/ExampleAlias,Plaintext=fileb://plain.bin",
    "KeyId=alias/ExampleAlias,Plaintext@=fileb://plain.bin",
    "GranteePrincipal=arn:aws:iam::111122223333:role/KeyUserRole,Operations=Decrypt,RetireOnDelete",
    "a=[b,[c,[d,[e]]]]", "a={b={c={d={e=f}}}}", "a=[{b=[{c=d}]}]", "a={b=[1,2],c={d=[]}}",
    "a=[ [ ] , { } ]", "a=[\n b,\n c\n]", "a={\n b=c,\n d=e\n}", "a=[b\n]", "a={b=c\n}",
    "a=b,c=[d,e],f={g=h},i='j',k=\"l\",m=n\\,o",
    "a=b\\", "a=b\\\\", "a='\\\\'", "a=\"\\\\\"", "a='\\'", "a=\"\\\"",
    "a=b'c", "a=b\"c", "a=b'c,d", "a=b,c'd", "a=b,c\"d,e",
    "a=b\r\n", "a=b\r", "a=\rb", "a=b\x0b,c=d", "a=b\x0c", "a=b \t ,c=d", "a=b,\t\tc=d",
    "a\t=b", "a \n @ \n = \n b", "a=b,c= ,d=e", "a=b,c=,d=", "a=b,,", "a=b,,c=d",
    "a=x,y,z,", "a=x,y,,z", "a=x, y ,z", "a='x' , 'y'", "a='x','y',c=d", "a=x,'y'z",
    "a=[x]y=z", "a=[x],", "a=[x],,b=c", "a={x=y},b", "a={x=y},b=", "a={x=y}, b=c",
    "a=\u00a0b", "a=b\u00a0,c=d", "a=\u2003", "a=[\u00a0]", "a={b=\u00a0}", "a=b,\u00a0c",
    "a=😀b", "a=[😀]", "a={😀=b}", "😀=b", "a=b,c=😀", "a=é,b=ü,c=日本語,d=한국어",
    "a=\x1c", "a=b\x1c", "a=[b\x1c]", "a=b\x85", "a=\x85",
]


def generated(count, seed):
    rnd = random.Random(seed)
    alphabet = list("=,[]{}'\"\\@ ") * 3 + list("abcxyzAB019-_.#/:") + [
        "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x01", "\x7f", "\u00a0", "\u0085", "\u2028",
        "\u3000", "é", "日", "😀", "\U0001F600", "\ufeff", "\\,", "a=", "=b", ",c=", "@=",
        "file://", "\\'", "\\\"", "\\\\"]
    out = []
    for i in range(count):
        if i % 3 == 0:
            # Start like a real value so the generator reaches deep into the grammar.
            text = rnd.choice(["a=", "Key=", "a@=", "a={", "a=[", "a=b,c="])
        else:
            text = ""
        text += "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        out.append(text)
    return out


def structured(count, seed):
    """Values built from the grammar, with random whitespace, escapes, quotes
    and non-ASCII text, a third of them then damaged by one edit."""
    rnd = random.Random(seed)
    word_chars = list("abcXYZ019-_./:#!$%&()*+;<>?@^`|~") + [
        " ", "\\,", "\\", "=", "é", "日本", "😀", "\u00a0", "\u3000", "\t", "[", "{", "]", "}"]
    keys = ["a", "b", "Key", "TagKey", "TagValue", "k1", "aws:ebs:id", "x.y", "#", "", "a-b_c/d"]
    spaces = ["", "", "", " ", "  ", "\t", "\n", " \n "]

    clean_chars = list("abcXYZ019-_./:") + [" ", "\\,", "é", "日本", "\u00a0"]
    noisy = [True]

    def word():
        chars = word_chars if noisy[0] else clean_chars
        return "".join(rnd.choice(chars) for _ in range(rnd.randint(0, 8)))

    def quoted():
        q = rnd.choice("'\"")
        body = "".join(rnd.choice(word_chars + [",", "\\" + q, "'", "\"", "\\\\"])
                       for _ in range(rnd.randint(0, 8)))
        return q + body + (rnd.choice([q, q, q, ""]) if noisy[0] else q)

    def item(depth):
        r = rnd.random()
        if depth < 4 and r < 0.2:
            return "[" + ",".join(rnd.choice(spaces) + item(depth + 1) + rnd.choice(spaces)
                                  for _ in range(rnd.randint(0, 3))) + rnd.choice(["]", "]", ",]", "" if noisy[0] else "]"])
        if depth < 4 and r < 0.4:
            return "{" + ",".join(rnd.choice(spaces) + key() + rnd.choice(spaces) + item(depth + 1)
                                  for _ in range(rnd.randint(0, 3))) + rnd.choice(["}", "}", ",}", "" if noisy[0] else "}"])
        return quoted() if r < 0.6 else word()

    def key():
        if not noisy[0]:
            return rnd.choice(keys[:-2]) + rnd.choice(["=", "=", "@="])
        return rnd.choice(keys) + rnd.choice(["=", "=", "=", "@=", " = ", " @= ", "=="])

    def values():
        r = rnd.random()
        if r < 0.5:
            return item(0)
        return ",".join(rnd.choice(spaces) + (quoted() if rnd.random() < 0.3 else word())
                        for _ in range(rnd.randint(1, 4)))

    out = []
    for i in range(count):
        # Half of them clean: closed quotes and brackets, plain words.
        noisy[0] = i % 2 == 0
        text = ",".join(rnd.choice(spaces[:4]) + key() + values()
                        for _ in range(rnd.randint(1, 4)))
        if i % 6 == 0 and text:
            pos = rnd.randint(0, len(text))
            text = text[:pos] + rnd.choice(list("=,[]{}'\"\\@ ")) + text[pos + 1:]
        out.append(text)
    return out


def mutated(corpus, count, seed):
    rnd = random.Random(seed)
    pieces = list("=,[]{}'\"\\@ \n") + ["\\,", "😀", "\u00a0"]
    out = []
    for _ in range(count):
        text = rnd.choice(corpus)
        for _ in range(rnd.randint(1, 3)):
            pos = rnd.randint(0, len(text))
            op = rnd.random()
            if op < 0.4:
                text = text[:pos] + rnd.choice(pieces) + text[pos:]
            elif op < 0.7 and text:
                text = text[:pos] + text[pos + 1:]
            else:
                text = text[:pos] + rnd.choice(corpus) + text[pos:]
        out.append(text)
    return out


@unittest.skipIf(ShorthandParser is None, "awscli is not importable")
@unittest.skipUnless(os.access(DRIVER, os.X_OK), f"{DRIVER} is not built")
class ShorthandDifferential(unittest.TestCase):

    def compare(self, inputs, marking, label):
        rows = run_driver(inputs, marking)
        stats = dict(accepted=0, refused=0, offset=0, message=0, message_verbatim=0)
        problems = []
        for text, row in zip(inputs, rows):
            ref = reference(text, marking)
            if ref[0] == "ok":
                if row.get("ok") != ref[1]:
                    problems.append((text, ref, row))
                else:
                    stats["accepted"] += 1
                continue
            if "error" not in row:
                problems.append((text, ref, row))
                continue
            err = row["error"]
            if ref[1] == "limit":
                # Python's recursion limit: ours must refuse too, by its own cap.
                if err["kind"] != "limit":
                    problems.append((text, ref, row))
                else:
                    stats["refused"] += 1
                continue
            stats["refused"] += 1
            if err["kind"] != ref[1]:
                problems.append((text, ref, row))
                continue
            if err["offset"] == ref[2]:
                stats["offset"] += 1
            else:
                problems.append((text, ref, row))
            if err["message"] == ref[3]:
                stats["message"] += 1
            else:
                problems.append((text, ref, row))
            if err["message"] == ref[4]:
                stats["message_verbatim"] += 1
        print(f"\n{label}: {len(inputs)} inputs, {stats['accepted']} accepted and equal, "
              f"{stats['refused']} refused by both, {stats['offset']} at the same offset, "
              f"{stats['message']} with the same message "
              f"({stats['message_verbatim']} equal to the CLI's text verbatim)")
        if problems:
            shown = "\n".join(f"  {t!r}\n    cli:  {r!r}\n    ours: {o!r}" for t, r, o in problems[:15])
            self.fail(f"{label}: {len(problems)} disagreements, first ones:\n{shown}")

    def test_corpus(self):
        corpus = DOCS + CONSTRUCTS + MORE
        self.assertGreater(len(corpus), 300)
        self.compare(corpus, marking=False, label="corpus")
        self.compare(corpus, marking=True, label="corpus, file-optional values marked")

    def test_generated(self):
        inputs = [t for t in generated(4000, 20261203) if nesting(t) < MAX_DEPTH]
        self.compare(inputs, marking=False, label="generated")
        self.compare(inputs, marking=True, label="generated, marked")

    def test_structured(self):
        inputs = [t for t in structured(4000, 42) if nesting(t) < MAX_DEPTH]
        self.compare(inputs, marking=True, label="structured, marked")

    def test_mutated(self):
        inputs = [t for t in mutated(DOCS + CONSTRUCTS + MORE, 3000, 7) if nesting(t) < MAX_DEPTH]
        self.compare(inputs, marking=True, label="mutated corpus, marked")

    def test_deep_nesting_is_refused(self):
        text = "a=" + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
        row = run_driver([text, "a=" + "[" * MAX_DEPTH + "]" * MAX_DEPTH], False)
        self.assertEqual(row[0]["error"]["kind"], "limit")
        self.assertIn("ok", row[1])


if __name__ == "__main__":
    unittest.main()
