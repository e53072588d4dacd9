// End-to-end think on random-weight qwen3 and qwen2 GGUFs (no accuracy claim): token accounting, the online
// switch appends only the control tokens to the live cache, paper mode re-prefills, and the CLI pipeline
// (probe prep -> probe train -> think) with its bad-input errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>

#include "kvlens/error.h"
#include "kvlens/random_model.h"
#include "kvlens/think.h"
#include "kvlens/think_study.h"
#include "test_support.h"

using namespace kvlens;

namespace {

// One random model per architecture for the whole binary (writing a 151k-vocab GGUF takes seconds).
std::string random_model(const std::string &, const std::string & arch) {
    static test::TempDir dir;
    static std::map<std::string, std::string> made;
    if (made.count(arch)) return made[arch];
    RandomModelSpec s;
    s.arch = arch;
    s.vocab_gguf = test::llama_dir() + "/models/ggml-vocab-qwen2.gguf";
    s.n_ctx = 512;
    s.seed = arch == "qwen3" ? 1 : 2;
    // qwen2 stands in for R1-Distill-Qwen: the tokens its GGUF adds to Qwen2's vocabulary (else "<｜Assistant｜>"
    // is text whose last byte merges with the "<" of "<think>", and the prompt would not split at the opener)
    if (arch == "qwen3") {  // a Qwen3: its real template and the think tokens its GGUF adds to Qwen2's vocabulary
        std::ifstream in(test::llama_dir() + "/models/templates/Qwen-Qwen3-0.6B.jinja");
        std::stringstream ss;
        ss << in.rdbuf();
        s.chat_template = ss.str();
        s.add_tokens = {{"<think>", 4}, {"</think>", 4}};
    }
    if (arch == "qwen2") s.add_tokens = {{"<｜User｜>", 4}, {"<｜Assistant｜>", 4}, {"<think>", 4}, {"</think>", 4}};
    std::string p = dir.path + "/" + arch + ".gguf";
    write_random_model(s, p);
    return made[arch] = p;
}

// Counts every K/V row per layer: each position must arrive exactly once unless the sequence is re-prefilled.
struct RowCounter : TapConsumer {
    int rows = 0, layer = 0;
    void on_kv(int l, int, const float *, const float *, int) override { rows += l == layer; }
};

struct Fixture {
    test::TempDir dir;
    std::string model_path;
    std::shared_ptr<Model> model;
    std::unique_ptr<Session> s;
    PromptFormat fmt;
    ProbeMeta meta;
    int dim = 0;
    explicit Fixture(const std::string & arch, const std::string & format = "auto") {
        ModelParams mp;
        mp.path = model_path = random_model(dir.path, arch);
        model = Model::load(mp);
        SessionParams sp;
        sp.n_ctx = 512;
        sp.n_threads = 1;
        s = std::make_unique<Session>(model, sp);
        fmt = prompt_format(*model, format);
        const ModelFacts & f = model->facts();
        meta.model = ProbeFingerprint::of(f);
        meta.window.seq_len = 8;
        meta.window.layers = "last:2";
        KvWindow w(meta.window, PoolShape{f.n_head_kv, f.head_dim_k, f.n_embd}, parse_layers("last:2", f.n_layer));
        dim = w.dim();
    }
    KvClassifier constant(float score) { return KvClassifier::constant(meta, dim, score, 8); }
};

ThinkParams small_caps() {
    ThinkParams p;
    p.fast_cap = 6;
    p.slow_cap = 10;
    return p;
}

void check_online_switch(const std::string & arch, const std::string & format) {
    Fixture fx(arch, format);
    RowCounter rc;
    KvClassifier easy = fx.constant(10);  // always "easy": below 50 - delta
    ThinkParams p = small_caps();
    p.tau = -1e9;  // force a slow start so the online rule switches to fast at the first check
    ThinkRunner tr(*fx.s, &easy, fx.fmt, p);
    fx.s->subscribe(&rc);
    ThinkResult r = tr.run("What is 12+30?");
    EXPECT_EQ(r.first_mode, ThinkMode::Slow);
    ASSERT_TRUE(r.switched);
    EXPECT_EQ(r.final_mode, ThinkMode::Fast);
    EXPECT_EQ(r.switch_at, 1);
    EXPECT_FLOAT_EQ(r.switch_score, 10.0f);
    const int ctl_prefix = (int) fx.model->tokenize(fx.fmt.slow_prefix, false, true).size();
    const int ctl_switch = (int) fx.model->tokenize(fx.fmt.to_fast, false, true).size();
    EXPECT_EQ(r.control_tokens, ctl_prefix + ctl_switch);
    // every generated token counted: the one before the switch + the fast answer
    EXPECT_GE(r.generated, 2);
    EXPECT_LE(r.generated, 1 + p.fast_cap);
    EXPECT_EQ(r.generated, r.generated_paper);
    // Session arithmetic: prompt + control + generated (an end-of-generation token is sampled but not evaluated)
    const int eog_not_evaluated = r.hit_cap ? 0 : 1;
    EXPECT_EQ(fx.s->n_past(), r.prompt_tokens + r.control_tokens + r.generated - eog_not_evaluated);
    // no re-prefill: every position went through the cache exactly once
    EXPECT_EQ(rc.rows, fx.s->n_past());
    EXPECT_EQ(r.reprefill_tokens, 0);
    EXPECT_NE(r.output.find(fx.fmt.to_fast), std::string::npos);
    EXPECT_EQ(r.n_checks, 2);  // the prompt and the first generated token
    EXPECT_TRUE(r.confidence.has_value() || r.generated < 3);
    fx.s->unsubscribe(&rc);
}

}  // namespace

TEST(ThinkModel, OnlineSwitchQwen3KeepsCache) { check_online_switch("qwen3", "auto"); }
TEST(ThinkModel, OnlineSwitchQwen2R1Format) { check_online_switch("qwen2", "r1"); }

TEST(ThinkModel, FastToSlowAndNoSwitch) {
    Fixture fx("qwen3");
    KvClassifier hard = fx.constant(90);
    ThinkParams p = small_caps();
    p.tau = 1e9;  // fast first, then the score 90 > 70 switches to slow
    {
        ThinkRunner tr(*fx.s, &hard, fx.fmt, p);
        ThinkResult r = tr.run("1+1");
        EXPECT_EQ(r.first_mode, ThinkMode::Fast);
        EXPECT_TRUE(r.switched);
        EXPECT_EQ(r.final_mode, ThinkMode::Slow);
        EXPECT_EQ(r.output.rfind(fx.fmt.fast_prefix, 0), 0u);
        EXPECT_NE(r.output.find(fx.fmt.to_slow, fx.fmt.fast_prefix.size()), std::string::npos);
    }
    p.tau = 50;  // 90 >= 50: slow; 90 stays inside the slow side: no switch
    ThinkRunner tr(*fx.s, &hard, fx.fmt, p);
    ThinkResult r = tr.run("1+1");
    EXPECT_EQ(r.first_mode, ThinkMode::Slow);
    EXPECT_FALSE(r.switched);
    EXPECT_TRUE(r.hit_cap);  // random weights ramble: the slow cap stops them, flagged
    EXPECT_EQ(r.generated, p.slow_cap);
}

TEST(ThinkModel, PaperModeCountsTheDiscardedTail) {
    Fixture fx("qwen3");
    KvClassifier easy = fx.constant(10);
    ThinkParams p = small_caps();
    p.tau = -1e9;
    p.paper_mode = true;
    RowCounter rc;
    ThinkRunner tr(*fx.s, &easy, fx.fmt, p);
    fx.s->subscribe(&rc);
    ThinkResult r = tr.run("What is 12+30?");
    ASSERT_TRUE(r.switched);
    EXPECT_EQ(r.switch_at, 1);
    EXPECT_GT(r.reprefill_tokens, r.prompt_tokens);
    EXPECT_EQ(r.discarded, r.generated - r.generated_paper);
    EXPECT_GT(r.discarded, 0);  // the first pass ran to its cap (random weights) and was cut after 1 token
    // the authors' count leaves out the discarded tail; kvlens's counts it
    EXPECT_LT(r.generated_paper, r.generated);
    EXPECT_GT(rc.rows, fx.s->n_past());  // re-prefill: positions went through the cache twice
}

TEST(ThinkModel, AlwaysFastNeedsNoClassifierAndBadInput) {
    Fixture fx("qwen3");
    ThinkParams p = small_caps();
    p.policy = ThinkPolicyKind::AlwaysFast;
    ThinkRunner tr(*fx.s, nullptr, fx.fmt, p);
    ThinkResult r = tr.run("2+2");
    EXPECT_EQ(r.first_mode, ThinkMode::Fast);
    EXPECT_LE(r.generated, p.fast_cap);
    EXPECT_THROW(tr.run(""), Error);
    EXPECT_THROW(tr.run("   \n"), Error);
    std::string longq;
    for (int i = 0; i < 600; ++i) longq += " " + std::to_string(i * 7919 % 1000);
    EXPECT_THROW(tr.run(longq), Error);  // does not fit -c 512
    p.policy = ThinkPolicyKind::Classifier;
    EXPECT_THROW(ThinkRunner(*fx.s, nullptr, fx.fmt, p), Error);
    // a classifier for another model
    ProbeMeta other = fx.meta;
    other.model.n_layer += 1;
    KvClassifier wrong = KvClassifier::constant(other, fx.dim, 10, 8);
    EXPECT_THROW(ThinkRunner(*fx.s, &wrong, fx.fmt, p), Error);
}

// The router study's forced answers rewind one cache, latest cut first: each must equal the answer a fresh
// sequence decodes after prompt + slow prefix + the kept think tokens + the close.
TEST(ThinkModel, ForcedAnswersEqualAFreshDecode) {
    Fixture fx("qwen3");
    ThinkParams p = small_caps();
    p.slow_cap = 16;
    p.policy = ThinkPolicyKind::AlwaysSlow;
    p.confidence = false;
    const std::string q = "What is 12+30?";
    ThinkRunner tr(*fx.s, nullptr, fx.fmt, p);
    const ThinkResult r = tr.run(q);
    ASSERT_EQ((int) r.tokens.size(), r.generated);
    std::vector<int> cuts = {0, 3, 7};
    if (r.generated >= 12) cuts.push_back(12);
    std::vector<std::string> seen;
    auto check = [&](const std::string & o) {
        seen.push_back(o);
        return o.find("42") != std::string::npos;
    };
    const int n_pre = r.prompt_tokens + r.control_tokens;
    const auto forced = forced_answers(*fx.s, fx.fmt, n_pre, fx.fmt.slow_prefix, r.tokens, cuts, check, 5);
    ASSERT_EQ(forced.size(), cuts.size());
    ASSERT_EQ(seen.size(), cuts.size());
    EXPECT_EQ(fx.s->n_past(), n_pre);  // left at the first cut (0)
    const Model & m = *fx.model;
    for (size_t k = 0; k < cuts.size(); ++k) {
        const ForcedAnswer & f = forced[k];
        EXPECT_EQ(f.at, cuts[k]);
        EXPECT_GE(f.answer_tokens, 1);
        EXPECT_LE(f.answer_tokens, 5);
        EXPECT_GT(f.maxprob, 0.0);
        EXPECT_LE(f.maxprob, 1.0 + 1e-6);
        // fresh: the whole prefix prefilled, then the same greedy answer
        fx.s->clear();
        std::vector<Token> pre = fx.fmt.tokens(m, q, PromptMode::Slow);
        pre.insert(pre.end(), r.tokens.begin(), r.tokens.begin() + cuts[k]);
        fx.s->eval(pre);
        fx.s->append_text(fx.fmt.to_fast);
        GenerateResult g = fx.s->generate(5);
        std::string kept, ans;
        for (int i = 0; i < cuts[k]; ++i) kept += m.piece(r.tokens[i], true);
        for (Token t : g.tokens) ans += m.piece(t, true);
        // seen[] is in the order the scan checked them: latest cut first
        EXPECT_EQ(seen[cuts.size() - 1 - k], fx.fmt.slow_prefix + kept + fx.fmt.to_fast + ans) << "cut " << cuts[k];
        EXPECT_EQ(f.answer_tokens, (int) g.tokens.size()) << "cut " << cuts[k];
    }
    // a cut beyond what the cache holds is refused, not decoded
    fx.s->clear();
    EXPECT_THROW(forced_answers(*fx.s, fx.fmt, 0, "", r.tokens, {2}, check, 5), Error);
}

TEST(ThinkModel, CliPipelineAndErrors) {
    Fixture fx("qwen3");
    const std::string bin = test::kvlens_bin(), d = fx.dir.path;
    const std::string m3 = fx.model_path, m2 = random_model(d, "qwen2");
    std::string out;
    const std::string prep = bin + " probe prep -m " + m3 + " -t 1 -c 512 --arith 6 --fast-cap 4 --slow-cap 8 --switch-aware --max-cuts 2 --seq-len 8 --layers last:2 -o " + d + "/prep.jsonl";
    ASSERT_EQ(test::run(prep, &out), 0) << out;
    ASSERT_EQ(test::run(prep, &out), 0) << out;  // resumes: nothing new
    EXPECT_NE(out.find("0 new, 6 already done"), std::string::npos) << out;
    {  // the same file with one weight changed (a retrained model of the same shape): resuming is refused
        const std::string m3b = d + "/retrained.gguf";
        std::filesystem::copy_file(m3, m3b);
        std::fstream f(m3b, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(-100, std::ios::end);
        char c = 0;
        f.read(&c, 1);
        c ^= 1;
        f.seekp(-100, std::ios::end);
        f.write(&c, 1);
        f.close();
        std::string p2 = prep;
        p2.replace(p2.find(m3), m3.size(), m3b);
        EXPECT_EQ(test::run(p2, &out), 1) << out;
        EXPECT_NE(out.find("was written with other settings"), std::string::npos) << out;
    }
    ASSERT_EQ(test::run(bin + " probe train --data " + d + "/prep.jsonl --hidden 16 --epochs 3 --lr 1e-3 --switch-aware -o " + d + "/c.gguf", &out), 0) << out;
    ASSERT_EQ(test::run(bin + " think -m " + m3 + " -t 1 -c 512 --classifier " + d + "/c.gguf --fast-cap 4 --slow-cap 8 -p '3+4'", &out), 0) << out;
    EXPECT_NE(out.find("first mode:"), std::string::npos) << out;
    EXPECT_NE(out.find("tokens:"), std::string::npos) << out;
    ASSERT_EQ(test::run(bin + " think -m " + m3 + " -t 1 -c 512 --classifier " + d + "/c.gguf --fast-cap 4 --slow-cap 8 --arith 3 --table --paper-mode --give-up 60,90 -o " + d + "/r.jsonl", &out), 0) << out;
    EXPECT_NE(out.find("initial + online switch"), std::string::npos) << out;
    EXPECT_NE(out.find("give-up (fast if score >= 60)"), std::string::npos) << out;
    EXPECT_NE(out.find("give-up (fast if score >= 90)"), std::string::npos) << out;
    EXPECT_NE(out.find("oracle with give-up"), std::string::npos) << out;
    EXPECT_NE(out.find("paper mode"), std::string::npos) << out;
    {  // the router study: its rows, and a resumed run prints the same study from the records
        const std::string study = bin + " think -m " + m3 + " -t 1 -c 512 --classifier " + d + "/c.gguf --fast-cap 4 --slow-cap 8 --arith 3 --table --study --sweep-theta 0.5,0.9 -o " + d + "/s.jsonl";
        ASSERT_EQ(test::run(study, &out), 0) << out;
        for (const char * row : {"router study on 3 problems", "| oracle (fast if right", "| random router", "| trial-answer exit (theta 0.50)", "| trial-answer exit (theta 0.90)", "| KV classifier, initial + online switch"})
            EXPECT_NE(out.find(row), std::string::npos) << row << "\n" << out;
        const std::string first = out.substr(out.find("router study on"));
        ASSERT_EQ(test::run(study, &out), 0) << out;
        EXPECT_NE(out.find("3 problems already in"), std::string::npos) << out;
        EXPECT_EQ(out.substr(out.find("router study on")), first);
        EXPECT_EQ(test::run(bin + " think -m " + m3 + " --classifier " + d + "/c.gguf --arith 3 --study", &out), 1) << out;
        EXPECT_NE(out.find("--study needs --table"), std::string::npos) << out;
        EXPECT_EQ(test::run(bin + " think -m " + m3 + " --classifier " + d + "/c.gguf --arith 3 --table --study --sweep-theta 0.5,1.5", &out), 1) << out;
        EXPECT_NE(out.find("kvlens: error: --sweep-theta: thresholds"), std::string::npos) << out;
    }
    {  // the hidden-state router: the same pipeline on --source hidden windows
        ASSERT_EQ(test::run(bin + " probe prep -m " + m3 + " -t 1 -c 512 --arith 4 --fast-cap 4 --slow-cap 8 --seq-len 8 --layers last:2 --source hidden -o " + d + "/prep-h.jsonl", &out), 0) << out;
        ASSERT_EQ(test::run(bin + " probe train --data " + d + "/prep-h.jsonl --hidden 16 --epochs 3 --lr 1e-3 -o " + d + "/h.gguf", &out), 0) << out;
        ASSERT_EQ(test::run(bin + " think -m " + m3 + " -t 1 -c 512 --classifier " + d + "/h.gguf --fast-cap 4 --slow-cap 8 --arith 2 --table --study", &out), 0) << out;
        EXPECT_NE(out.find("| hidden-state classifier, initial only"), std::string::npos) << out;
        EXPECT_NE(out.find("source=hidden"), std::string::npos) << out;  // the classifier line names its window
        // both routers in one run: the hidden one's rows join the KV router's study
        ASSERT_EQ(test::run(bin + " think -m " + m3 + " -t 1 -c 512 --classifier " + d + "/c.gguf --compare-classifier " + d + "/h.gguf --fast-cap 4 --slow-cap 8 --arith 2 --table --study", &out), 0) << out;
        EXPECT_NE(out.find("| KV classifier, initial + online switch"), std::string::npos) << out;
        EXPECT_NE(out.find("| hidden-state classifier (compared), initial + online switch"), std::string::npos) << out;
        EXPECT_NE(out.find("the hidden-state classifier (compared) router"), std::string::npos) << out;
        EXPECT_EQ(test::run(bin + " think -m " + m3 + " --classifier " + d + "/c.gguf --compare-classifier " + d + "/h.gguf --arith 2 --table", &out), 1) << out;
        EXPECT_NE(out.find("--compare-classifier needs --study"), std::string::npos) << out;
    }
    EXPECT_EQ(test::run(bin + " think -m " + m3 + " --classifier " + d + "/c.gguf --give-up 60,90 -p '3+4'", &out), 1) << out;
    EXPECT_NE(out.find("--give-up: one value"), std::string::npos) << out;
    // classifier next to another model: one line, exit 1
    EXPECT_EQ(test::run(bin + " think -m " + m2 + " --classifier " + d + "/c.gguf -p '3+4'", &out), 1);
    EXPECT_NE(out.find("kvlens: error: classifier was trained for qwen3"), std::string::npos) << out;
    EXPECT_EQ(test::run(bin + " think -m " + m3 + " --classifier " + d + "/c.gguf -p ''", &out), 1) << out;
    EXPECT_EQ(test::run(bin + " think -m " + m3 + " --classifier " + m3 + " -p '1+1'", &out), 1) << out;
    EXPECT_NE(out.find("not a kvlens classifier"), std::string::npos) << out;
    EXPECT_EQ(test::run(bin + " probe", &out), 1) << out;
}
