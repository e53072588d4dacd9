// Prompts exactly as a real model's own template renders them. For the real templates of the pinned llama.cpp
// tree that users of the paper run (Qwen3-0.6B, QwQ-32B, DeepSeek-R1-Distill-Qwen-32B, Llama-3.1-8B-Instruct),
// in random-weight GGUFs on the matching real vocabularies: the tokens kvlens builds for the user turn, fast and
// slow equal the template rendered by llama.cpp's Jinja engine (enable_thinking false / true) and tokenized as
// llama-server does, BOS included — in the library and in every command that builds a chat prompt (read back
// through --verbose-prompt).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "chat.h"
#include "kvlens/error.h"
#include "kvlens/prompt.h"
#include "kvlens/random_model.h"
#include "test_support.h"

using namespace kvlens;

namespace {

struct Case {
    const char * name, * arch, * vocab, * tmpl;
    int add_bos;             // the real model's tokenizer.ggml.add_bos_token
    bool thinking;           // the template has a thinking mode
    bool slow_adds_opener;   // enable_thinking=true leaves "<think>\n" to the model (Qwen3): kvlens writes it
    const char * fast;       // the fast prefix the template renders after the assistant opener
};
void PrintTo(const Case & c, std::ostream * os) { *os << c.name; }
const Case kCases[] = {
    {"qwen3", "qwen3", "ggml-vocab-qwen2.gguf", "Qwen-Qwen3-0.6B.jinja", 0, true, true, "<think>\n\n</think>\n\n"},
    {"qwq", "qwen2", "ggml-vocab-qwen2.gguf", "Qwen-QwQ-32B.jinja", 0, true, false, "<think>\n</think>"},
    {"r1", "qwen2", "ggml-vocab-qwen2.gguf", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", 1, true, false,
     "<think>\n</think>"},
    {"llama31", "llama", "ggml-vocab-llama-bpe.gguf", "meta-llama-Llama-3.1-8B-Instruct.jinja", 1, false, false, ""},
};
const std::string kQ = "12+34";

test::TempDir & tmp() {
    static test::TempDir d;
    return d;
}
using kvlens::test::slurp;
std::string tmpl_path(const Case & c) { return test::llama_dir() + "/models/templates/" + c.tmpl; }
std::string vocab_path(const Case & c) { return test::llama_dir() + "/models/" + c.vocab; }

std::string model_path(const Case & c) {
    const std::string path = tmp().path + "/" + c.name + ".gguf";
    if (test::file_exists(path)) return path;
    RandomModelSpec s;
    s.arch = c.arch;
    s.n_layer = 4, s.n_embd = 64, s.n_head = 2, s.n_head_kv = 1, s.head_dim = 32, s.n_ff = 96, s.n_ctx = 512;
    s.vocab_gguf = vocab_path(c);
    s.chat_template = slurp(tmpl_path(c));
    s.add_bos = c.add_bos;
    // the tokens the real model's GGUF adds to Qwen2's base vocabulary
    const std::string name = c.name;
    if (name == "qwen3" || name == "qwq") s.add_tokens = {{"<think>", 4}, {"</think>", 4}};
    if (name == "r1") {
        s.add_tokens = {{"<｜begin▁of▁sentence｜>", 3}, {"<｜User｜>", 4}, {"<｜Assistant｜>", 4}, {"<think>", 4}, {"</think>", 4}};
        s.bos_token = "<｜begin▁of▁sentence｜>";
    }
    write_random_model(s, path);
    return path;
}

// The reference: the template rendered by llama.cpp's Jinja engine, tokenized as llama-server tokenizes a prompt.
std::vector<Token> reference(const Model & m, bool thinking, const std::string & extra = "") {
    auto tmpls = common_chat_templates_init(m.raw(), "");
    common_chat_templates_inputs in;
    common_chat_msg msg;
    msg.role = "user";
    msg.content = kQ;
    in.messages = {msg};
    in.enable_thinking = thinking;
    in.use_jinja = true;
    return m.tokenize(common_chat_templates_apply(tmpls.get(), in).prompt + extra, true, true);
}
std::vector<Token> ref_fast(const Model & m) { return reference(m, false); }
std::vector<Token> ref_slow(const Model & m, const Case & c) { return reference(m, true, c.slow_adds_opener ? "<think>\n" : ""); }

// The token ids of every "--verbose-prompt" block in a command's output, in order.
std::vector<std::vector<Token>> verbose_blocks(const std::string & out) {
    std::vector<std::vector<Token>> b;
    std::istringstream is(out);
    std::string line;
    static const std::regex head("^number of tokens in .* = [0-9]+$"), tok("^ *([0-9]+) -> '.*");
    std::smatch mt;
    while (std::getline(is, line)) {
        if (std::regex_match(line, head)) b.emplace_back();
        else if (!b.empty() && std::regex_match(line, mt, tok)) b.back().push_back(std::stoi(mt[1]));
    }
    return b;
}

class PromptTemplates : public ::testing::TestWithParam<Case> {
protected:
    void SetUp() override {
        KVLENS_REQUIRE_FILE(vocab_path(GetParam()));
        KVLENS_REQUIRE_FILE(tmpl_path(GetParam()));
        path_ = model_path(GetParam());
        m_ = Model::load({path_});
    }
    std::vector<std::vector<Token>> cli(const std::string & args) {
        std::string out;
        const std::string cmd = test::kvlens_bin() + " " + args + " -m " + path_ + " --verbose-prompt -t 2";
        const int rc = test::run(cmd, &out);
        EXPECT_EQ(rc, 0) << cmd << "\n" << out;
        return verbose_blocks(out);
    }
    std::string path_;
    std::shared_ptr<Model> m_;
};

}  // namespace

TEST_P(PromptTemplates, LibraryTokensEqualTheTemplate) {
    const Case & c = GetParam();
    PromptFormat f = prompt_format(*m_, "auto");
    EXPECT_EQ(f.name, "template");
    EXPECT_EQ(f.thinking, c.thinking);
    if (!c.thinking) {
        EXPECT_EQ(f.tokens(*m_, kQ, PromptMode::None), reference(*m_, true));
        EXPECT_EQ(f.tokens(*m_, kQ, PromptMode::Fast), reference(*m_, false));
        return;
    }
    EXPECT_EQ(f.fast_prefix, c.fast);
    EXPECT_EQ(f.slow_prefix, "<think>\n");
    EXPECT_EQ(f.slow_opener_added, c.slow_adds_opener);
    const auto fast = f.tokens(*m_, kQ, PromptMode::Fast), slow = f.tokens(*m_, kQ, PromptMode::Slow);
    EXPECT_EQ(fast, ref_fast(*m_));
    EXPECT_EQ(slow, ref_slow(*m_, c));
    // the user turn is the shared head of both, and ends at the assistant opener
    const auto user = PromptFormat::tokenize(*m_, f.render(*m_, kQ));
    ASSERT_LT(user.size(), fast.size());
    EXPECT_TRUE(std::equal(user.begin(), user.end(), fast.begin()));
    EXPECT_TRUE(std::equal(user.begin(), user.end(), slow.begin()));
    // BOS exactly as the tokenizer wants it: once when it adds one, never otherwise
    const int n_bos = (int) std::count(fast.begin(), fast.end(), m_->bos());
    EXPECT_EQ(n_bos, c.add_bos ? 1 : 0);
    if (c.add_bos) EXPECT_EQ(fast[0], m_->bos());
    // the default generation prompt (llama-server with nothing said) is the enable_thinking=true rendering
    EXPECT_EQ(f.tokens(*m_, kQ, PromptMode::None), reference(*m_, true));
}

TEST_P(PromptTemplates, PaperAndOverridePrefixes) {
    const Case & c = GetParam();
    PromptFormat paper = prompt_format(*m_, "paper");
    EXPECT_EQ(paper.fast_prefix, "<think>\n</think>\n\n");
    EXPECT_EQ(paper.slow_prefix, "<think>\n");
    EXPECT_EQ(paper.render(*m_, kQ), prompt_format(*m_, "auto").render(*m_, kQ));  // same user turn
    PromptOptions o;
    o.fast_prefix = "F";
    o.slow_prefix = "S";
    PromptFormat f = prompt_format(*m_, o);
    EXPECT_EQ(f.fast_prefix, "F");
    EXPECT_EQ(f.slow_prefix, "S");
    EXPECT_TRUE(f.thinking);
    (void) c;
}

TEST_P(PromptTemplates, EveryCommandBuildsTheTemplatesTokens) {
    const Case & c = GetParam();
    const std::string d = tmp().path + "/" + c.name;
    test::run("mkdir -p " + d);
    if (!c.thinking) {
        auto g = cli("generate --chat -n 1 -p " + kQ);
        ASSERT_EQ(g.size(), 1u);
        EXPECT_EQ(g[0], reference(*m_, true));
        std::string out;
        EXPECT_NE(test::run(test::kvlens_bin() + " think --policy fast -p " + kQ + " -m " + path_, &out), 0);
        EXPECT_NE(out.find("kvlens: error: the chat template has no thinking mode"), std::string::npos) << out;
        return;
    }
    const auto fast = ref_fast(*m_), slow = ref_slow(*m_, c);
    {
        std::ofstream o(d + "/q.jsonl");
        o << "{\"id\": \"a\", \"question\": \"" << kQ << "\", \"answer\": \"46\"}\n";
    }
    struct Run {
        std::string args;
        std::vector<std::vector<Token>> want;
    };
    const std::vector<Run> runs = {
        {"generate --chat -rea off -n 1 -p " + kQ, {fast}},
        {"generate --chat -rea on -n 1 -p " + kQ, {slow}},
        {"kv-dump --chat -rea off --layers last:1 -p " + kQ + " -o " + d + "/dump", {fast}},
        {"embed --chat -rea on -p " + kQ, {slow}},
        {"coe --data " + d + "/q.jsonl --format arith --mode fast -n 2 -o " + d + "/coe-fast.jsonl", {fast}},
        {"coe --data " + d + "/q.jsonl --format arith --mode slow -n 2 -o " + d + "/coe-slow.jsonl", {slow}},
        {"probe prep --data " + d + "/q.jsonl --format arith --fast-cap 2 --slow-cap 2 --no-raw -o " + d + "/prep.jsonl",
         {fast, slow}},
        {"think --policy fast --fast-cap 2 --no-confidence -p " + kQ, {fast}},
        {"think --policy slow --slow-cap 2 --no-confidence -p " + kQ, {slow}},
    };
    for (const auto & r : runs) EXPECT_EQ(cli(r.args), r.want) << r.args;
}

TEST(PromptFormat, HandWrittenWithoutTemplateAndEscapes) {
    EXPECT_EQ(unescape("<think>\\n\\n</think>\\n\\n"), "<think>\n\n</think>\n\n");
    EXPECT_EQ(escape("a\nb\\"), "a\\nb\\\\");
    EXPECT_EQ(parse_prompt_mode("off"), PromptMode::Fast);
    EXPECT_EQ(parse_prompt_mode("on"), PromptMode::Slow);
    EXPECT_EQ(parse_prompt_mode("auto"), PromptMode::None);
    EXPECT_THROW(parse_prompt_mode("maybe"), Error);
}

INSTANTIATE_TEST_SUITE_P(RealTemplates, PromptTemplates, ::testing::ValuesIn(kCases),
                         [](const auto & i) { return std::string(i.param.name); });
