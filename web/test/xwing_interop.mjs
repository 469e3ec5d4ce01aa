// X-Wing (ML-KEM-768 + X25519) with @hpke/hybridkem-x-wing, for the interoperability test
// with Python's MLKEM768_X25519 (tests/e2e/test_xwing_interop.py). Reads one JSON object on
// stdin, writes one on stdout. Not part of the inbox bundle.
import { Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { XWing } from "@hpke/hybridkem-x-wing";

const suite = new CipherSuite({ kem: new XWing(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
const b64 = (bytes) => Buffer.from(bytes).toString("base64");
const raw = (text) => new Uint8Array(Buffer.from(text, "base64"));

let input = "";
for await (const chunk of process.stdin) input += chunk;
const ask = JSON.parse(input || "{}");
let answer;
if (ask.op === "generate") {
  const pair = await suite.kem.generateKeyPair();
  answer = {
    public_key: b64(await suite.kem.serializePublicKey(pair.publicKey)),
    seed: b64(await suite.kem.serializePrivateKey(pair.privateKey)),
  };
} else if (ask.op === "open") {
  const key = await suite.kem.deserializePrivateKey(raw(ask.seed));
  const sealed = raw(ask.ciphertext);
  const size = suite.kem.encSize;
  const opened = await suite.open(
    { recipientKey: key, enc: sealed.slice(0, size), info: raw(ask.info) },
    sealed.slice(size),
  );
  answer = { plaintext: b64(opened) };
} else if (ask.op === "seal") {
  const key = await suite.kem.deserializePublicKey(raw(ask.public_key));
  const { enc, ct } = await suite.seal({ recipientPublicKey: key, info: raw(ask.info) }, raw(ask.plaintext));
  answer = { ciphertext: b64(new Uint8Array([...new Uint8Array(enc), ...new Uint8Array(ct)])) };
}
process.stdout.write(JSON.stringify(answer));
