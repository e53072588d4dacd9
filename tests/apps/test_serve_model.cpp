// kvlens serve end to end on the embedded reasoner (models/kvlens-reasoner.gguf + its classifier): the server runs
// as a child process on a free loopback port, httplib's client talks to it, every wait is bounded, the child is
// stopped with SIGTERM (and must exit 0) at the end.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cpp-httplib/httplib.h>
#include <nlohmann/json.hpp>

#include "kvlens/arith.h"
#include "kvlens/prompt.h"
#include "test_support.h"

using json = nlohmann::json;
using namespace kvlens;

namespace {

const std::string kModel = std::string(KVLENS_SOURCE_DIR) + "/models/kvlens-reasoner.gguf";
const std::string kClf = std::string(KVLENS_SOURCE_DIR) + "/models/kvlens-reasoner.classifier.gguf";
const std::string kKey = "test-key-15";

// A `kvlens serve` child on 127.0.0.1 with --port 0; the port is read from its log.
struct ServerProc {
    pid_t pid = -1;
    int port = 0;
    std::string log;
    explicit ServerProc(std::vector<std::string> extra) {
        static int n = 0;
        log = "/tmp/kvlens-serve-test-" + std::to_string(getpid()) + "-" + std::to_string(n++) + ".log";
        std::vector<std::string> args = {test::kvlens_bin(), "serve", "-m", kModel, "--host", "127.0.0.1", "--port", "0", "-t", "1"};
        args.insert(args.end(), extra.begin(), extra.end());
        pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test that aborts (a sanitizer report) leaves no server behind
            int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 2);
            dup2(fd, 1);
            std::vector<char *> av;
            for (auto & a : args) av.push_back(a.data());
            av.push_back(nullptr);
            execv(av[0], av.data());
            _exit(127);
        }
        for (int i = 0; i < 300 && port == 0; ++i) {  // <= 30 s for the port line
            std::ifstream in(log);
            std::stringstream ss;
            ss << in.rdbuf();
            const std::string t = ss.str();
            size_t p = t.find("listening on http://127.0.0.1:");
            if (p != std::string::npos) port = std::atoi(t.c_str() + p + 30);
            else std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        for (int i = 0; i < 300 && port; ++i) {  // <= 30 s until /health says ok
            httplib::Client c("127.0.0.1", port);
            auto r = c.Get("/health");
            if (r && r->status == 200) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        port = 0;
    }
    // SIGTERM; the exit status (or -1 when it does not exit within 30 s, then SIGKILL).
    int stop() {
        if (pid <= 0) return -1;
        kill(pid, SIGTERM);
        int st = 0;
        for (int i = 0; i < 300; ++i) {
            if (waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        pid = -1;
        return -1;
    }
    ~ServerProc() {
        if (pid > 0) stop();
        std::remove(log.c_str());
    }
    httplib::Client client(bool key = true) const {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(120, 0);
        c.set_connection_timeout(10, 0);
        if (key) c.set_bearer_token_auth(kKey);
        return c;
    }
    std::string log_text() const {
        std::ifstream in(log);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
};

ServerProc & main_server() {
    static ServerProc s({"--classifier", kClf, "--api-key", kKey, "--max-body-size", "200000"});
    return s;
}

std::string question(int level, uint64_t seed) { return arith_generate(level, seed | kArithEvalSeedBit).question; }

// /metrics shows `line` within 10 s (polled every 100 ms).
bool metrics_show(const ServerProc & s, const std::string & line) {
    for (int i = 0; i < 100; ++i) {
        auto m = s.client(false).Get("/metrics");
        if (m && m->body.find(line) != std::string::npos) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
}

json chat_body(const std::string & q, json extra = json::object()) {
    json b = {{"model", "kvlens-reasoner.gguf"}, {"messages", {{{"role", "user"}, {"content", q}}}}};
    b.update(extra);
    return b;
}

json post(httplib::Client & c, const std::string & path, const json & body, int * status = nullptr) {
    auto r = c.Post(path, body.dump(), "application/json");
    if (!r) {
        ADD_FAILURE() << "no response from " << path;
        return json();
    }
    if (status) *status = r->status;
    else EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body, nullptr, false);
}

// With --queue-size 0 the slot may still be finishing the previous request when the client already has its
// answer: a 503 then means "busy", and a client retries (bounded: 10 s).
json post_when_free(httplib::Client & c, const std::string & path, const json & body) {
    for (int i = 0; i < 100; ++i) {
        auto r = c.Post(path, body.dump(), "application/json");
        if (r && r->status == 503) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            continue;
        }
        if (!r) break;
        EXPECT_EQ(r->status, 200) << r->body;
        return json::parse(r->body, nullptr, false);
    }
    ADD_FAILURE() << "no answer from " << path << " within 10 s";
    return json();
}

struct Streamed {
    std::string reasoning, content, id;
    json last;  // the chunk with finish_reason
    bool done = false;
    int chunks = 0;
};

// Reads an SSE stream; on_chunk may return false to hang up.
Streamed stream(httplib::Client & c, const json & body, std::function<bool(const json &, Streamed &)> on_chunk = nullptr) {
    Streamed s;
    std::string buf;
    httplib::Headers h;
    auto r = c.Post(
        "/v1/chat/completions", h, body.dump(), "application/json",
        [&](const char * data, size_t n) {
            buf.append(data, n);
            size_t e;
            while ((e = buf.find("\n\n")) != std::string::npos) {
                std::string ev = buf.substr(0, e);
                buf.erase(0, e + 2);
                if (ev.rfind("data: ", 0) != 0) continue;
                ev = ev.substr(6);
                if (ev == "[DONE]") {
                    s.done = true;
                    continue;
                }
                json j = json::parse(ev, nullptr, false);
                if (j.is_discarded() || !j.contains("choices")) {
                    s.last = j;
                    continue;
                }
                ++s.chunks;
                s.id = j.value("id", "");
                auto & d = j["choices"][0]["delta"];
                if (d.contains("reasoning_content") && d["reasoning_content"].is_string()) s.reasoning += d["reasoning_content"].get<std::string>();
                if (d.contains("content") && d["content"].is_string()) s.content += d["content"].get<std::string>();
                if (!j["choices"][0]["finish_reason"].is_null()) s.last = j;
                if (on_chunk && !on_chunk(j, s)) return false;
            }
            return true;
        },
        nullptr);
    (void) r;
    return s;
}

}  // namespace

// ---- the library piece serve adds: a conversation through the template ------------------------------------

TEST(ServeModel, RenderMessagesOfOneUserTurnEqualsRender) {
    ModelParams mp;
    mp.path = kModel;
    auto m = Model::load(mp);
    PromptFormat f = prompt_format(*m, "auto");
    EXPECT_EQ(f.render_messages(*m, {{"user", "12+34"}}), f.render(*m, "12+34"));
    const std::string conv = f.render_messages(*m, {{"system", "be brief"}, {"user", "1+1"}, {"assistant", "2"}, {"user", "2+2"}});
    EXPECT_NE(conv.find("be brief"), std::string::npos);
    EXPECT_NE(conv.find("1+1"), std::string::npos);
    EXPECT_EQ(conv.rfind("2+2") < conv.size(), true);
    EXPECT_TRUE(conv.size() >= f.render(*m, "2+2").size());
    EXPECT_EQ(conv.substr(conv.size() - 22), "<|im_start|>assistant\n");
    EXPECT_THROW(f.render_messages(*m, {}), std::exception);
    EXPECT_THROW(f.render_messages(*m, {{"user", "a"}, {"assistant", "b"}}), std::exception);
    EXPECT_THROW(f.render_messages(*m, {{"tool", "a"}}), std::exception);
}

// ---- endpoints -----------------------------------------------------------------------------------

TEST(ServeModel, HealthAndModels) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0) << s.log_text();
    auto c = s.client(false);
    auto r = c.Get("/health");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(json::parse(r->body)["status"], "ok");
    r = c.Get("/v1/models");  // public, as in llama-server
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    json j = json::parse(r->body);
    EXPECT_EQ(j["object"], "list");
    EXPECT_EQ(j["data"][0]["id"], "kvlens-reasoner.gguf");
    EXPECT_EQ(j["data"][0]["meta"]["classifier"], true);
}

TEST(ServeModel, ChatNonStreamingSplitsReasoning) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0);
    auto c = s.client();
    json j = post(c, "/v1/chat/completions", chat_body(question(3, 1), {{"thinking", "slow"}}));
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j["object"], "chat.completion");
    auto & msg = j["choices"][0]["message"];
    EXPECT_EQ(msg["role"], "assistant");
    ASSERT_TRUE(msg["reasoning_content"].is_string());
    EXPECT_FALSE(msg["reasoning_content"].get<std::string>().empty());
    EXPECT_EQ(msg["content"].get<std::string>().find("<think>"), std::string::npos);
    EXPECT_EQ(msg["content"].get<std::string>().find("</think>"), std::string::npos);
    EXPECT_EQ(msg["content"].get<std::string>().find("<|im_end|>"), std::string::npos);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
    auto & u = j["usage"];
    EXPECT_GT(u["completion_tokens_details"]["reasoning_tokens"].get<int>(), 0);
    EXPECT_LT(u["completion_tokens_details"]["reasoning_tokens"].get<int>(), u["completion_tokens"].get<int>());
    EXPECT_EQ(u["total_tokens"].get<int>(), u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
    auto & kv = j["kvlens"];
    EXPECT_EQ(kv["first_mode"], "slow");
    EXPECT_TRUE(kv["score"].is_null());  // forced mode: no classifier score
    EXPECT_EQ(kv["generated"], u["completion_tokens"]);
    EXPECT_TRUE(kv["confidence"]["kv_coe_c"].is_number());
    EXPECT_GT(kv["confidence"]["maxprob"].get<double>(), 0.0);
    EXPECT_LE(kv["confidence"]["maxprob"].get<double>(), 1.0);

    // fast: no reasoning, via each of the spellings clients send
    for (json extra : {json{{"thinking", "fast"}}, json{{"chat_template_kwargs", {{"enable_thinking", false}}}},
                       json{{"reasoning_effort", "none"}}}) {
        json f = post(c, "/v1/chat/completions", chat_body(question(1, 2), extra));
        ASSERT_TRUE(f.is_object());
        EXPECT_EQ(f["kvlens"]["first_mode"], "fast") << extra.dump();
        EXPECT_FALSE(f["choices"][0]["message"].contains("reasoning_content")) << extra.dump();
        EXPECT_FALSE(f["choices"][0]["message"]["content"].get<std::string>().empty());
    }
    // slow through enable_thinking: true (a server with a classifier would otherwise pick adaptively)
    json sl = post(c, "/v1/chat/completions", chat_body(question(1, 2), {{"chat_template_kwargs", {{"enable_thinking", true}}}}));
    EXPECT_EQ(sl["kvlens"]["first_mode"], "slow");
    EXPECT_TRUE(sl["choices"][0]["message"].contains("reasoning_content"));
    // llama-server's reasoning budget: the think is closed after that many thinking tokens (0: at once), the
    // budget message written into it; the answer follows
    for (int budget : {0, 6}) {
        json bb = post(c, "/v1/chat/completions",
                       chat_body(question(5, 3), {{"thinking", "slow"}, {"reasoning_budget_tokens", budget},
                                                  {"reasoning_budget_message", " (out of time)"}}));
        ASSERT_TRUE(bb.is_object());
        EXPECT_EQ(bb["usage"]["completion_tokens_details"]["reasoning_tokens"], budget) << bb.dump();
        EXPECT_EQ(bb["kvlens"]["reasoning_ended"], true);
        const std::string rc = bb["choices"][0]["message"].value("reasoning_content", "");
        EXPECT_NE(rc.find("(out of time)"), std::string::npos) << rc;
        EXPECT_FALSE(bb["choices"][0]["message"]["content"].get<std::string>().empty());
    }
    int bst = 0;
    post(c, "/v1/chat/completions", chat_body("1+1", {{"reasoning_budget_tokens", -2}}), &bst);
    EXPECT_EQ(bst, 400);
    // max_tokens: finish_reason length, exactly that many tokens
    json l = post(c, "/v1/chat/completions", chat_body(question(5, 3), {{"thinking", "slow"}, {"max_tokens", 5}}));
    EXPECT_EQ(l["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(l["usage"]["completion_tokens"], 5);
    // a conversation
    json conv = {{"messages", {{{"role", "system"}, {"content", "answer"}}, {{"role", "user"}, {"content", "1+1"}},
                               {{"role", "assistant"}, {"content", "2"}}, {{"role", "user"}, {"content", question(2, 4)}}}}};
    json cj = post(c, "/v1/chat/completions", conv);
    EXPECT_GT(cj["usage"]["prompt_tokens"].get<int>(), 10);
}

TEST(ServeModel, StreamingEqualsNonStreaming) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0);
    auto c = s.client();
    for (int lv : {2, 5}) {
        json b = chat_body(question(lv, 10 + lv));
        json whole = post(c, "/v1/chat/completions", b);
        b["stream"] = true;
        Streamed st = stream(c, b);
        EXPECT_TRUE(st.done);
        EXPECT_GT(st.chunks, 2);
        EXPECT_EQ(st.content, whole["choices"][0]["message"]["content"].get<std::string>());
        EXPECT_EQ(st.reasoning, whole["choices"][0]["message"].value("reasoning_content", ""));
        ASSERT_TRUE(st.last.contains("kvlens")) << st.last.dump();
        EXPECT_EQ(st.last["kvlens"]["generated"], whole["kvlens"]["generated"]);
        EXPECT_EQ(st.last["choices"][0]["finish_reason"], whole["choices"][0]["finish_reason"]);
        EXPECT_EQ(st.last["usage"], whole["usage"]);
    }
}

// Adaptive thinking through the API = `kvlens think -p Q` (greedy): same first mode, score, switch and tokens.
TEST(ServeModel, AdaptiveEqualsKvlensThink) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0);
    auto c = s.client();
    test::TempDir dir;
    int fast = 0, slow = 0;
    for (int i = 0; i < 6; ++i) {
        const std::string q = question(1 + i % 5, 100 + i);
        const std::string out = dir.path + "/t" + std::to_string(i) + ".jsonl";
        std::string log;
        ASSERT_EQ(test::run(test::kvlens_bin() + " think -m " + kModel + " --classifier " + kClf + " -t 1 -p '" + q + "' -o " + out, &log), 0) << log;
        std::ifstream in(out);
        json t;
        in >> t;
        json a = post(c, "/v1/chat/completions", chat_body(q));
        ASSERT_TRUE(a.is_object());
        auto & kv = a["kvlens"];
        EXPECT_EQ(kv["first_mode"], t["first_mode"]) << q;
        EXPECT_NEAR(kv["score"].get<double>(), t["score"].get<double>(), 1e-4) << q;
        EXPECT_EQ(kv["switched"], t["switched"]) << q;
        if (t["switched"].get<bool>()) EXPECT_EQ(kv["switch_at"], t["switch_at"]) << q;
        EXPECT_EQ(kv["generated"], t["generated"]) << q;
        EXPECT_EQ(kv["control_tokens"], t["control"]) << q;
        EXPECT_NEAR(kv["confidence"]["kv_coe_c"].get<double>(), t["confidence"].get<double>(), 1e-6) << q;
        // content = the turn after the first think closer (the model may write more think tags after a switch;
        // they stay content, as in llama-server's reasoning parser); only a fast -> slow switch reopens a think
        if (t["first_mode"] == "fast" && t["switched"].get<bool>()) continue;
        std::string o = t["output"];
        size_t p = o.find("</think>");
        std::string ans = p == std::string::npos ? o : o.substr(p + 8);
        if (size_t e = ans.find("<|im_end|>"); e != std::string::npos) ans.resize(e);
        ans.erase(0, ans.find_first_not_of(" \n"));
        ans.erase(ans.find_last_not_of(" \n") + 1);
        EXPECT_EQ(a["choices"][0]["message"]["content"].get<std::string>(), ans) << q;
        (t["first_mode"] == "fast" ? fast : slow)++;
    }
    std::printf("adaptive: %d fast, %d slow first modes\n", fast, slow);
}

TEST(ServeModel, EmbeddingsEqualKvlensEmbed) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0);
    auto c = s.client();
    test::TempDir dir;
    const std::vector<std::string> texts = {"12+34", "the cat sat on the mat", "9*9"};
    {
        std::ofstream f(dir.path + "/t.txt");
        for (auto & t : texts) f << t << "\n";
    }
    std::string out;
    ASSERT_EQ(test::run(test::kvlens_bin() + " embed -m " + kModel + " -t 1 -f " + dir.path + "/t.txt -o " + dir.path + "/e.jsonl", &out), 0) << out;
    std::ifstream in(dir.path + "/e.jsonl");
    std::vector<std::vector<float>> ref;
    std::string line;
    while (std::getline(in, line)) ref.push_back(json::parse(line)["embedding"].get<std::vector<float>>());
    ASSERT_EQ(ref.size(), texts.size());
    json j = post(c, "/v1/embeddings", {{"input", texts}, {"model", "kvlens-reasoner.gguf"}});
    ASSERT_EQ(j["data"].size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        auto v = j["data"][i]["embedding"].get<std::vector<float>>();
        ASSERT_EQ(v.size(), ref[i].size());
        for (size_t k = 0; k < v.size(); ++k) EXPECT_NEAR(v[k], ref[i][k], 1e-5) << i << " " << k;
    }
    json one = post(c, "/v1/embeddings", {{"input", texts[0]}, {"encoding_format", "base64"}});
    const std::string b = one["data"][0]["embedding"];
    // decode base64 -> floats
    std::string bytes;
    uint32_t val = 0;  // only the low bits matter: unsigned, so the shift cannot overflow (UBSan)
    int bits = -8;
    for (char ch : b) {
        const char * tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char * p = std::strchr(tab, ch);
        if (!p || ch == 0) break;
        val = (val << 6) + uint32_t(p - tab);
        bits += 6;
        if (bits >= 0) {
            bytes.push_back(char((val >> bits) & 0xFF));
            bits -= 8;
        }
    }
    ASSERT_EQ(bytes.size(), ref[0].size() * 4);
    for (size_t k = 0; k < ref[0].size(); ++k) {
        float f;
        std::memcpy(&f, bytes.data() + 4 * k, 4);
        EXPECT_NEAR(f, ref[0][k], 1e-5);
    }
    json hid = post(c, "/v1/embeddings", {{"input", texts[0]}, {"source", "hidden"}});
    EXPECT_NE(hid["kvlens"]["pooling"], j["kvlens"]["pooling"]);
}

TEST(ServeModel, ErrorStatuses) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0);
    auto c = s.client();
    auto expect = [&](const httplib::Result & r, int status, const char * what) {
        ASSERT_TRUE(r) << what;
        EXPECT_EQ(r->status, status) << what << ": " << r->body;
        json j = json::parse(r->body, nullptr, false);
        ASSERT_TRUE(j.is_object() && j.contains("error")) << what << ": " << r->body;
        EXPECT_EQ(j["error"]["code"], status) << what;
        EXPECT_TRUE(j["error"]["message"].is_string()) << what;
        EXPECT_TRUE(j["error"]["type"].is_string()) << what;
    };
    expect(c.Post("/v1/chat/completions", "{not json", "application/json"), 400, "invalid JSON");
    expect(c.Post("/v1/chat/completions", "[1,2]", "application/json"), 400, "not an object");
    expect(c.Post("/v1/chat/completions", R"({"messages":"hi"})", "application/json"), 400, "messages type");
    expect(c.Post("/v1/chat/completions", chat_body("1+1", {{"temperature", "hot"}}).dump(), "application/json"), 400, "temperature type");
    // finite as a double, infinite as the float it becomes (fuzz_serve_request)
    expect(c.Post("/v1/chat/completions", chat_body("1+1", {{"temperature", 5.5e46}}).dump(), "application/json"), 400, "temperature range");
    expect(c.Post("/v1/chat/completions", chat_body("1+1", {{"max_tokens", -5}}).dump(), "application/json"), 400, "max_tokens");
    expect(c.Post("/v1/chat/completions", chat_body("1+1", {{"thinking", "maybe"}}).dump(), "application/json"), 400, "thinking");
    expect(c.Post("/v1/chat/completions", chat_body("1+1", {{"stream", "yes"}}).dump(), "application/json"), 400, "stream type");
    expect(c.Post("/v1/embeddings", R"({"input": 5})", "application/json"), 400, "embedding input");
    std::string longq;
    for (int i = 0; i < 6000; ++i) longq += "1+";
    expect(c.Post("/v1/chat/completions", chat_body(longq + "1").dump(), "application/json"), 400, "prompt over the context");
    expect(c.Post("/v1/chat/completions", chat_body(std::string(300000, 'x')).dump(), "application/json"), 413, "body over the limit");
    expect(c.Post("/v1/chat/completions", chat_body("1+1", {{"model", "gpt-4"}}).dump(), "application/json"), 404, "unknown model");
    expect(c.Get("/v1/nothing"), 404, "unknown route");
    auto nokey = s.client(false);
    expect(nokey.Post("/v1/chat/completions", chat_body("1+1").dump(), "application/json"), 401, "missing key");
    httplib::Client wrong("127.0.0.1", s.port);
    wrong.set_bearer_token_auth("wrong");
    expect(wrong.Post("/v1/chat/completions", chat_body("1+1").dump(), "application/json"), 401, "wrong key");
    // still alive and answering
    json ok = post(c, "/v1/chat/completions", chat_body("1+1", {{"max_tokens", 3}, {"thinking", "slow"}}));
    EXPECT_EQ(ok["usage"]["completion_tokens"], 3);
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find("kvlens_requests_total{status=\"400\"}"), std::string::npos);
    EXPECT_NE(m->body.find("kvlens_requests_total{status=\"401\"}"), std::string::npos);
    EXPECT_NE(m->body.find("kvlens_tokens_generated_total"), std::string::npos);
    EXPECT_NE(m->body.find("kvlens_queue_depth 0"), std::string::npos);
}

TEST(ServeModel, CompletionsRawPrompt) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0);
    auto c = s.client();
    ModelParams mp;
    mp.path = kModel;
    auto m = Model::load(mp);
    const PromptFormat f = prompt_format(*m, "auto");
    const std::string prompt = f.render(*m, question(1, 5)) + f.fast_prefix;
    json fast = post(c, "/v1/chat/completions", chat_body(question(1, 5), {{"thinking", "fast"}}));
    json r = post(c, "/v1/completions", {{"prompt", prompt}});
    EXPECT_EQ(r["object"], "text_completion");
    // the raw prompt is the fast chat prompt: same answer
    std::string t = r["choices"][0]["text"];
    t.erase(t.find_last_not_of(" \n") + 1);
    EXPECT_EQ(t, fast["choices"][0]["message"]["content"].get<std::string>());
    EXPECT_EQ(r["usage"]["completion_tokens"], fast["usage"]["completion_tokens"]);
}

// 16 questions over 4 concurrent connections: each answer equals the one the same request gets alone.
TEST(ServeModel, ConcurrentAnswersEqualSoloAnswers) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0);
    std::vector<json> bodies;
    for (int i = 0; i < 16; ++i) bodies.push_back(chat_body(question(1 + i % 5, 200 + i), i % 3 ? json::object() : json{{"stream", false}}));
    std::vector<json> solo;
    {
        auto c = s.client();
        for (auto & b : bodies) solo.push_back(post(c, "/v1/chat/completions", b));
    }
    std::vector<json> got(bodies.size());
    std::vector<std::thread> th;
    for (int w = 0; w < 4; ++w)
        th.emplace_back([&, w] {
            auto c = s.client();
            for (size_t i = w; i < bodies.size(); i += 4) {
                auto r = c.Post("/v1/chat/completions", bodies[i].dump(), "application/json");
                if (r && r->status == 200) got[i] = json::parse(r->body);
            }
        });
    for (auto & t : th) t.join();
    for (size_t i = 0; i < bodies.size(); ++i) {
        ASSERT_TRUE(got[i].is_object()) << i;
        EXPECT_EQ(got[i]["choices"][0]["message"], solo[i]["choices"][0]["message"]) << i;
        EXPECT_EQ(got[i]["kvlens"]["generated"], solo[i]["kvlens"]["generated"]) << i;
        EXPECT_EQ(got[i]["kvlens"]["first_mode"], solo[i]["kvlens"]["first_mode"]) << i;
    }
}

// A server that sleeps 20 ms per token: reasoning_end mid-stream, a client that hangs up, a full queue (503),
// SIGTERM finishing the request in flight.
TEST(ServeModel, ControlDisconnectQueueAndSigterm) {
    ServerProc s({"--token-delay-ms", "20", "--queue-size", "0"});
    ASSERT_GT(s.port, 0) << s.log_text();
    const std::string q = question(5, 77);
    // reasoning_end: after the first reasoning delta, from another connection
    {
        auto c = s.client(false);
        auto ctl = s.client(false);
        json b = chat_body(q, {{"thinking", "slow"}, {"stream", true}, {"reasoning_control", true}});
        json reply;
        bool sent = false;
        Streamed st = stream(c, b, [&](const json & j, Streamed & st) {
            if (!sent && !st.reasoning.empty()) {
                sent = true;
                reply = post(ctl, "/v1/chat/completions/control", {{"id", j["id"]}, {"action", "reasoning_end"}});
            }
            return true;
        });
        ASSERT_TRUE(sent);
        EXPECT_EQ(reply["success"], true) << reply.dump();
        EXPECT_TRUE(st.done);
        ASSERT_TRUE(st.last.contains("kvlens"));
        EXPECT_EQ(st.last["kvlens"]["reasoning_ended"], true);
        EXPECT_FALSE(st.content.empty());
        // the same question without the control thinks longer
        json full = post_when_free(c, "/v1/chat/completions", chat_body(q, {{"thinking", "slow"}}));
        EXPECT_GT(full["usage"]["completion_tokens_details"]["reasoning_tokens"].get<int>(),
                  st.last["usage"]["completion_tokens_details"]["reasoning_tokens"].get<int>());
        // not armed / unknown id / bad action
        json r = post(ctl, "/v1/chat/completions/control", {{"id", "chatcmpl-none"}, {"action", "reasoning_end"}});
        EXPECT_EQ(r["success"], false);
        int status = 0;
        post(ctl, "/v1/chat/completions/control", {{"id", "x"}, {"action", "jump"}}, &status);
        EXPECT_EQ(status, 400);
    }
    // a client that hangs up mid-stream cancels its generation; the next request is answered
    {
        auto c = s.client(false);
        Streamed st = stream(c, chat_body(q, {{"thinking", "slow"}, {"stream", true}}),
                             [](const json &, Streamed & st) { return st.chunks < 3; });
        EXPECT_FALSE(st.done);
        EXPECT_TRUE(metrics_show(s, "kvlens_cancelled_total 1"));
        json ok = post_when_free(c, "/v1/chat/completions", chat_body("1+1", {{"max_tokens", 2}, {"thinking", "slow"}}));
        EXPECT_EQ(ok["usage"]["completion_tokens"], 2);
    }
    // one running, queue size 0: the next one gets 503; then SIGTERM lets the running one finish
    {
        std::promise<void> started;
        auto fut_started = started.get_future();
        std::thread runner;
        Streamed st;
        runner = std::thread([&] {
            auto c = s.client(false);
            bool once = false;
            st = stream(c, chat_body(q, {{"thinking", "slow"}, {"stream", true}, {"max_tokens", 60}}),
                        [&](const json &, Streamed &) {
                            if (!once) started.set_value();
                            once = true;
                            return true;
                        });
            if (!once) started.set_value();
        });
        ASSERT_EQ(fut_started.wait_for(std::chrono::seconds(30)), std::future_status::ready);
        auto c2 = s.client(false);
        auto r = c2.Post("/v1/chat/completions", chat_body("1+1").dump(), "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 503) << r->body;
        kill(s.pid, SIGTERM);
        runner.join();
        EXPECT_TRUE(st.done);
        EXPECT_EQ(st.last["usage"]["completion_tokens"], 60);
        int status = -1;
        for (int i = 0; i < 300 && s.pid > 0; ++i) {
            int w = 0;
            if (waitpid(s.pid, &w, WNOHANG) == s.pid) {
                status = WIFEXITED(w) ? WEXITSTATUS(w) : 128 + WTERMSIG(w);
                s.pid = -1;
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        }
        EXPECT_EQ(status, 0) << s.log_text();
    }
}

TEST(ServeModel, BadParallelIsRefused) {
    std::string out;
    EXPECT_EQ(test::run(test::kvlens_bin() + " serve -m " + kModel + " -np 0 --port 0", &out), 1);
    EXPECT_NE(out.find("kvlens: error: -np must be >= 1"), std::string::npos) << out;
}

// -np 8 on one context, f32 cache without flash attention (the -np identity tests' setting: f16 + CPU flash
// attention round differently with the batch and flip near-tie greedy tokens). 64 distinct questions, every
// thinking mode, streaming and not, over 8 concurrent connections: each answer equals the one the same request
// gets alone, none lost, none mixed; then a client dropped mid-stream does not stop the others.
TEST(ServeModel, EightSlotsAnswerAsAlone) {
    ServerProc s({"-np", "8", "--classifier", kClf, "-ctk", "f32", "-ctv", "f32", "-fa", "off"});
    ASSERT_GT(s.port, 0) << s.log_text();
    EXPECT_NE(s.log_text().find("8 slot(s)"), std::string::npos) << s.log_text();
    const char * modes[] = {"adaptive", "fast", "slow"};
    std::vector<json> bodies;
    for (int i = 0; i < 64; ++i)
        bodies.push_back(chat_body(question(1 + i % 5, 500 + i), {{"thinking", modes[i % 3]}, {"max_tokens", 160}}));
    auto answer = [](const json & r) {
        return json{{"message", r["choices"][0]["message"]}, {"usage", r["usage"]}, {"first_mode", r["kvlens"]["first_mode"]},
                    {"switched", r["kvlens"]["switched"]}, {"generated", r["kvlens"]["generated"]}};
    };
    std::vector<json> solo;
    {
        auto c = s.client(false);
        for (auto & b : bodies) solo.push_back(answer(post(c, "/v1/chat/completions", b)));
    }
    auto counter = [&](const std::string & name) {
        auto m = s.client(false).Get("/metrics");
        size_t p = m ? m->body.find("\n" + name + " ") : std::string::npos;
        return p == std::string::npos ? -1.0 : std::atof(m->body.c_str() + p + name.size() + 2);
    };
    const double d0 = counter("kvlens_decode_calls_total"), t0 = counter("kvlens_batch_tokens_total");
    std::vector<json> got(bodies.size());
    std::vector<std::thread> th;
    for (int w = 0; w < 8; ++w)
        th.emplace_back([&, w] {
            auto c = s.client(false);
            for (size_t i = w; i < bodies.size(); i += 8) {
                if (i % 2) {  // streamed: the concatenated deltas and the last chunk
                    json b = bodies[i];
                    b["stream"] = true;
                    Streamed st = stream(c, b);
                    if (!st.done || !st.last.contains("usage")) continue;
                    json msg = {{"role", "assistant"}, {"content", st.content}};
                    if (!st.reasoning.empty()) msg["reasoning_content"] = st.reasoning;
                    got[i] = json{{"message", msg}, {"usage", st.last["usage"]}, {"first_mode", st.last["kvlens"]["first_mode"]},
                                  {"switched", st.last["kvlens"]["switched"]}, {"generated", st.last["kvlens"]["generated"]}};
                } else {
                    auto r = c.Post("/v1/chat/completions", bodies[i].dump(), "application/json");
                    if (r && r->status == 200) got[i] = answer(json::parse(r->body));
                }
            }
        });
    for (auto & t : th) t.join();
    for (size_t i = 0; i < bodies.size(); ++i) EXPECT_EQ(got[i], solo[i]) << "question " << i;
    // batched: the 8 connections' tokens shared decodes (alone, a decode carries one token after the prompt)
    const double d1 = counter("kvlens_decode_calls_total"), t1 = counter("kvlens_batch_tokens_total");
    ASSERT_GT(d1, d0);
    EXPECT_GT((t1 - t0) / (d1 - d0), 3.0) << (t1 - t0) << " tokens in " << (d1 - d0) << " decodes";
    auto m = s.client(false).Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find("kvlens_requests_processing 0"), std::string::npos) << m->body;

    // 8 streams at once; one (slow thinking) hangs up after 3 chunks: the other 7 finish with their solo answers
    std::vector<Streamed> out(8);
    th.clear();
    for (int w = 0; w < 8; ++w)
        th.emplace_back([&, w] {
            auto c = s.client(false);
            json b = bodies[2 * w + 1];
            b["stream"] = true;
            out[w] = stream(c, b, [w](const json &, Streamed & st) { return w != 5 || st.chunks < 3; });
        });
    for (auto & t : th) t.join();
    for (int w = 0; w < 8; ++w) {
        if (w == 5) {
            EXPECT_FALSE(out[w].done);
            continue;
        }
        EXPECT_TRUE(out[w].done) << w;
        EXPECT_EQ(out[w].content, solo[2 * w + 1]["message"]["content"].get<std::string>()) << w;
        EXPECT_EQ(out[w].last["usage"], solo[2 * w + 1]["usage"]) << w;
    }
    EXPECT_TRUE(metrics_show(s, "kvlens_cancelled_total 1"));
    EXPECT_EQ(s.stop(), 0) << s.log_text();
}

// The last test of the binary: SIGTERM on the main server, exit status 0.
TEST(ServeModel, ZzSigtermExitsZero) {
    auto & s = main_server();
    ASSERT_GT(s.port, 0);
    EXPECT_EQ(s.stop(), 0) << s.log_text();
    EXPECT_NE(s.log_text().find("GET /health -> 200"), std::string::npos);  // one log line per request
    EXPECT_NE(s.log_text().find("serve: stopped"), std::string::npos);
}
