// kvlens serve against the official OpenAI Node SDK: chat, streaming with reasoning_content, embeddings, the
// control call, error statuses, 8 requests at once on 4 slots. Usage: node serve_openai.mjs KVLENS_BIN MODEL CLASSIFIER
// Exit 77 (ctest: skipped) when the openai package is not installed (scripts/deps.sh installs it).
import { spawn } from "node:child_process";

let OpenAI;
try {
  ({ default: OpenAI } = await import("openai"));
} catch (e) {
  console.log("SKIP: the npm package 'openai' is not installed in tests/apps/node (run scripts/deps.sh)");
  process.exit(77);
}
const [bin, model, clf] = process.argv.slice(2);
const key = "node-test-key";
const srv = spawn(bin, ["serve", "-m", model, "--classifier", clf, "--port", "0", "-t", "1", "--api-key", key,
                        "--token-delay-ms", "10", "-np", "4", "-ctk", "f32", "-ctv", "f32", "-fa", "off"], { stdio: ["ignore", "ignore", "pipe"] });
let log = "";
const killer = setTimeout(() => { console.error("FAIL: timed out\n" + log); srv.kill("SIGKILL"); process.exit(1); }, 240000);
const port = await new Promise((resolve, reject) => {
  srv.stderr.on("data", (d) => {
    log += d;
    const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (m) resolve(Number(m[1]));
  });
  srv.on("exit", (c) => reject(new Error("server exited " + c + "\n" + log)));
});
const base = `http://127.0.0.1:${port}`;
for (let i = 0; i < 300; i++) {  // <= 30 s
  const r = await fetch(base + "/health").catch(() => null);
  if (r && r.status === 200) break;
  await new Promise((r) => setTimeout(r, 100));
}
let failed = 0;
function check(cond, what) {
  if (!cond) { failed++; console.log("FAIL: " + what); } else console.log("ok: " + what);
}
const client = new OpenAI({ baseURL: base + "/v1", apiKey: key, maxRetries: 0, timeout: 120000 });
try {
  const models = await client.models.list();
  const id = models.data[0].id;
  check(id === "kvlens-reasoner.gguf", "models.list");

  const q = "4721+3856";
  const r = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: q }], thinking: "slow" });
  const msg = r.choices[0].message;
  check(typeof msg.content === "string" && msg.content.length > 0, "chat: content");
  check(typeof msg.reasoning_content === "string" && msg.reasoning_content.length > 0, "chat: reasoning_content");
  check(r.usage.completion_tokens_details.reasoning_tokens > 0, "chat: usage.reasoning_tokens");
  check(r.kvlens && r.kvlens.first_mode === "slow", "chat: kvlens object");

  const st = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: q }], thinking: "slow", stream: true });
  let reasoning = "", content = "", last = null;
  for await (const ch of st) {
    const d = ch.choices[0].delta;
    if (d.reasoning_content) reasoning += d.reasoning_content;
    if (d.content) content += d.content;
    if (ch.choices[0].finish_reason) last = ch;
  }
  check(reasoning === msg.reasoning_content, "stream: reasoning_content deltas = non-streaming reasoning_content");
  check(content === msg.content, "stream: content deltas = non-streaming content");
  check(last && last.kvlens && last.kvlens.generated === r.kvlens.generated, "stream: kvlens in the last chunk");

  // control: end the thinking mid-stream
  const st2 = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: q }], thinking: "slow",
                                                      stream: true, reasoning_control: true });
  let sent = null, last2 = null;
  for await (const ch of st2) {
    if (!sent && ch.choices[0].delta.reasoning_content) {
      sent = await fetch(base + "/v1/chat/completions/control", { method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
        body: JSON.stringify({ id: ch.id, action: "reasoning_end" }) }).then((x) => x.json());
    }
    if (ch.choices[0].finish_reason) last2 = ch;
  }
  check(sent && sent.success === true, "control: reasoning_end accepted");
  check(last2 && last2.kvlens.reasoning_ended === true, "control: the thinking was ended");
  check(last2 && last2.usage.completion_tokens_details.reasoning_tokens < r.usage.completion_tokens_details.reasoning_tokens,
        "control: fewer reasoning tokens than the full think");

  // 8 requests at once on 4 slots (f32 cache: no near-tie flips across batch sizes) = the same requests one by one
  const qs = ["12+34", "7*8", "305-99", "41+41", "9*9", "120-7", "66+5", "13*3"];
  const ask = (x) => client.chat.completions.create({ model: id, messages: [{ role: "user", content: x }], thinking: "fast" });
  const alone = [];
  for (const x of qs) alone.push(await ask(x));
  const together = await Promise.all(qs.map(ask));
  check(together.every((t, i) => t.choices[0].message.content === alone[i].choices[0].message.content &&
                                 t.usage.completion_tokens === alone[i].usage.completion_tokens),
        "8 concurrent requests = the same requests one by one");

  const e = await client.embeddings.create({ model: id, input: ["12+34", "9*9"] });
  check(e.data.length === 2 && e.data[0].embedding.length > 0 && typeof e.data[0].embedding[0] === "number",
        "embeddings (the SDK asks for base64 and decodes it)");

  for (const [what, call, status] of [
    ["unknown model -> 404", () => client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: q }] }), 404],
    ["wrong types -> 400", () => client.chat.completions.create({ model: id, messages: [{ role: "user", content: q }], temperature: "hot" }), 400],
    ["wrong key -> 401", () => new OpenAI({ baseURL: base + "/v1", apiKey: "wrong", maxRetries: 0 }).chat.completions.create(
        { model: id, messages: [{ role: "user", content: q }] }), 401],
  ]) {
    try {
      await call();
      check(false, what + " (no error)");
    } catch (err) {
      check(err instanceof OpenAI.APIError && err.status === status && typeof err.message === "string", what + ` (got ${err.status})`);
    }
  }
} catch (err) {
  failed++;
  console.log("FAIL: " + (err.stack || err) + "\n" + log);
}
srv.kill("SIGTERM");
const code = await new Promise((resolve) => srv.on("exit", (c) => resolve(c)));
check(code === 0, "SIGTERM: exit 0");
clearTimeout(killer);
process.exit(failed ? 1 : 0);
