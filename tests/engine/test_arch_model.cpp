// Random-weight GGUFs with the architectures of Llama-3.1 (llama, GQA), Qwen2 / R1-Distill-Qwen (qwen2,
// q/k/v biases) and Qwen3 (qwen3, q/k norms), built on llama.cpp's real vocabularies: tokenization, tap
// shapes, tap == llama_state_seq_get_data, generation == prefill, rewind, hidden states, cache types.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "kvlens/model.h"
#include "kvlens/random_model.h"
#include "kvlens/session.h"
#include "state_parse.h"
#include "test_support.h"

using namespace kvlens;

namespace {

struct Arch {
    const char * arch;
    const char * vocab;
};
void PrintTo(const Arch & a, std::ostream * os) { *os << a.arch; }
const Arch kArchs[] = {{"llama", "ggml-vocab-llama-bpe.gguf"}, {"qwen2", "ggml-vocab-qwen2.gguf"}, {"qwen3", "ggml-vocab-qwen2.gguf"}};

test::TempDir & tmp() {
    static test::TempDir d;
    return d;
}

std::string vocab_path(const Arch & a) { return test::llama_dir() + "/models/" + a.vocab; }

std::shared_ptr<Model> model_for(const Arch & a) {
    static std::map<std::string, std::shared_ptr<Model>> cache;
    auto it = cache.find(a.arch);
    if (it != cache.end()) return it->second;
    RandomModelSpec s;
    s.arch = a.arch;
    s.n_layer = 3, s.n_embd = 128, s.n_head = 4, s.n_head_kv = 2, s.head_dim = 32, s.n_ff = 192;
    s.vocab_gguf = vocab_path(a);
    std::string path = tmp().path + "/" + a.arch + ".gguf";
    write_random_model(s, path);
    auto m = Model::load({path});
    cache[a.arch] = m;
    return m;
}

SessionParams params(const char * fa = "off", const char * ct = "f32") {
    SessionParams p;
    p.n_ctx = 256;
    p.n_threads = 1;
    p.flash_attn = fa;
    p.cache_type_k = p.cache_type_v = ct;
    return p;
}

double rel(const float * a, const float * b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; ++i) num = std::max(num, (double) std::fabs(a[i] - b[i])), den = std::max(den, (double) std::fabs(b[i]));
    return num / std::max(den, 1e-12);
}

class ArchTest : public ::testing::TestWithParam<Arch> {
protected:
    void SetUp() override { KVLENS_REQUIRE_FILE(vocab_path(GetParam())); }
    std::vector<Token> prompt(Model & m) { return m.tokenize("The KV cache is a free representation: 12 + 34 = 46.", false); }
};

TEST_P(ArchTest, TokenizesLikeTheRealModel) {
    auto m = model_for(GetParam());
    std::string base = vocab_path(GetParam());
    std::ifstream fi(base + ".inp"), fo(base + ".out");
    ASSERT_TRUE(fi && fo);
    std::stringstream ss;
    ss << fi.rdbuf();
    std::string raw = ss.str(), sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> inp;
    for (size_t p = 0; p < raw.size();) {
        size_t n = raw.find(sep, p);
        if (n == std::string::npos) { inp.push_back(raw.substr(p)); break; }
        inp.push_back(raw.substr(p, n - p));
        p = n + sep.size();
    }
    std::vector<std::string> out;
    for (std::string line; std::getline(fo, line);) out.push_back(line);
    ASSERT_EQ(inp.size(), out.size());
    for (size_t i = 0; i < inp.size(); ++i) {
        std::vector<Token> expect;
        std::stringstream ls(out[i]);
        for (int t; ls >> t;) expect.push_back(t);
        EXPECT_EQ(m->tokenize(inp[i], false, false), expect) << "text #" << i << ": '" << inp[i] << "'";
    }
}

// ModelParams::vocab_only (kvlens-train's tokenizer): no weights and no per-layer facts (llama.cpp loads no
// hyper-parameters then and aborts on a per-layer query), the same tokens as the full model.
TEST_P(ArchTest, VocabOnlyLoadTokenizesLikeTheFullModel) {
    auto full = model_for(GetParam());
    ModelParams mp;
    mp.path = tmp().path + "/" + GetParam().arch + ".gguf";
    mp.vocab_only = true;
    auto v = Model::load(mp);
    EXPECT_EQ(v->facts().n_vocab, full->facts().n_vocab);
    EXPECT_EQ(v->facts().n_layer, 0);
    EXPECT_EQ(v->facts().arch, GetParam().arch);
    EXPECT_EQ(v->tokenize("The KV cache: 12 + 34 = 46.", false), full->tokenize("The KV cache: 12 + 34 = 46.", false));
    const Token t = full->tokenize("cache", false).at(0);
    EXPECT_EQ(v->piece(t), full->piece(t));
}

TEST_P(ArchTest, TapShapesAndStateDataAgree) {
    auto m = model_for(GetParam());
    const auto & f = m->facts();
    EXPECT_EQ(f.arch, GetParam().arch);
    EXPECT_EQ(f.n_layer, 3);
    EXPECT_EQ(f.n_head_kv, 2);
    EXPECT_EQ(f.kv_row(), 64);
    for (const char * fa : {"off", "on"}) {
        Session s(m, params(fa));
        TapSpec spec;
        spec.layers = {0, 1, 2};
        s.set_tap(spec);
        KvStore store(spec.layers, f.kv_row());
        s.subscribe(&store);
        auto toks = prompt(*m);
        s.eval(toks);
        test::SeqState st;
        ASSERT_TRUE(test::parse_seq_state(s.state_data(), st)) << "fa=" << fa;
        ASSERT_EQ(st.pos.size(), toks.size());
        ASSERT_EQ(st.row, f.kv_row());
        for (int l = 0; l < 3; ++l) {
            ASSERT_EQ(store.n_pos(l), (int) toks.size());
            for (size_t c = 0; c < st.pos.size(); ++c) {
                int p = st.pos[c];
                EXPECT_EQ(0, std::memcmp(store.k(l, p), st.k[l].data() + c * st.row, st.row * 4)) << "K l" << l << " p" << p;
                EXPECT_EQ(0, std::memcmp(store.v(l, p), st.v[l].data() + c * st.row, st.row * 4)) << "V l" << l << " p" << p;
            }
        }
    }
}

TEST_P(ArchTest, GenerationMatchesPrefillAndRewindKeepsSurvivors) {
    auto m = model_for(GetParam());
    const int row = m->facts().kv_row();
    TapSpec spec;
    spec.layers = {0, 2};
    auto toks = prompt(*m);

    Session g(m, params());
    g.set_tap(spec);
    KvStore gen(spec.layers, row);
    g.subscribe(&gen);
    g.eval(toks);
    auto r = g.generate(10);
    ASSERT_EQ(g.n_past(), (int) (toks.size() + r.tokens.size() - (r.hit_eog ? 1 : 0)));

    auto check_against_prefill = [&](const std::vector<Token> & seq, const KvStore & got, const char * what) {
        Session p(m, params());
        p.set_tap(spec);
        KvStore ref(spec.layers, row);
        p.subscribe(&ref);
        p.eval(seq);
        for (int slot = 0; slot < 2; ++slot) {
            ASSERT_EQ(got.n_pos(slot), (int) seq.size()) << what;
            for (int pos = 0; pos < (int) seq.size(); ++pos) {
                EXPECT_LE(rel(got.k(slot, pos), ref.k(slot, pos), row), 1e-5) << what << " K slot " << slot << " pos " << pos;
                EXPECT_LE(rel(got.v(slot, pos), ref.v(slot, pos), row), 1e-5) << what << " V slot " << slot << " pos " << pos;
            }
        }
    };
    check_against_prefill(g.tokens(), gen, "generation");

    // rewind into the generated part and continue differently
    int cut = (int) toks.size() + 3;
    g.rewind(cut);
    EXPECT_EQ(g.n_past(), cut);
    EXPECT_EQ(gen.n_pos(0), cut);
    g.append_text(" and then something else");
    check_against_prefill(g.tokens(), gen, "after rewind");
}

TEST_P(ArchTest, HiddenStatesIncludeEmbeddingInputAndLastLayer) {
    auto m = model_for(GetParam());
    const auto & f = m->facts();
    Session s(m, params());
    TapSpec spec;
    spec.layers = {0, 1, 2};
    spec.kv = false;
    spec.hidden = true;
    spec.hidden_embedding = true;
    s.set_tap(spec);
    KvStore store(spec.layers, f.kv_row(), f.n_embd);
    s.subscribe(&store);
    auto toks = prompt(*m);
    s.eval(toks, /*all_logits=*/true);
    EXPECT_EQ(store.n_pos(0), 0);  // K/V not asked for
    for (int slot = 0; slot <= 3; ++slot) EXPECT_EQ(store.n_hidden_pos(slot), (int) toks.size()) << slot;
    // Without all logits, llama.cpp computes the last layer only for the output token: the tap puts that row
    // at its position (the last prompt token), then every generated token's row at its own.
    {
        Session q(m, params());
        q.set_tap(spec);
        KvStore st(spec.layers, f.kv_row(), f.n_embd);
        q.subscribe(&st);
        q.eval(toks);
        const int last = (int) toks.size() - 1;
        EXPECT_LE(rel(st.hidden(2, last), store.hidden(2, last), f.n_embd), 1e-5);  // 1 row vs all rows: other summation order
        EXPECT_EQ(0, std::memcmp(st.hidden(0, 3), store.hidden(0, 3), f.n_embd * 4));
        q.generate(3);
        EXPECT_EQ(st.n_hidden_pos(2), q.n_past());
        Session r(m, params());
        r.set_tap(spec);
        KvStore sr(spec.layers, f.kv_row(), f.n_embd);
        r.subscribe(&sr);
        r.eval(q.tokens(), true);
        for (int p = last; p < q.n_past(); ++p)
            EXPECT_LE(rel(st.hidden(2, p), sr.hidden(2, p), f.n_embd), 1e-5) << "last layer, position " << p;
    }
    // the same token at two positions has the same embedding input, and it differs from layer 0's output
    auto t2 = m->tokenize("ab ab", false);
    Session s2(m, params());
    s2.set_tap(spec);
    KvStore st2(spec.layers, f.kv_row(), f.n_embd);
    s2.subscribe(&st2);
    s2.eval(t2);
    int e = st2.hidden_slot_embedding();
    for (size_t i = 0; i < t2.size(); ++i)
        for (size_t j = i + 1; j < t2.size(); ++j)
            if (t2[i] == t2[j]) EXPECT_EQ(0, std::memcmp(st2.hidden(e, i), st2.hidden(e, j), f.n_embd * 4));
    EXPECT_GT(rel(st2.hidden(0, 0), st2.hidden(e, 0), f.n_embd), 1e-3);
}

TEST_P(ArchTest, QuantizedCacheAndFlashAttentionStillTap) {
    auto m = model_for(GetParam());
    const int row = m->facts().kv_row();
    TapSpec spec;
    spec.layers = {0, 1, 2};
    auto toks = prompt(*m);
    Session a(m, params("off", "f32"));
    a.set_tap(spec);
    KvStore ra(spec.layers, row);
    a.subscribe(&ra);
    a.eval(toks);
    Session b(m, params("on", "q8_0"));
    b.set_tap(spec);
    KvStore rb(spec.layers, row);
    b.subscribe(&rb);
    b.eval(toks);
    for (int pos = 0; pos < (int) toks.size(); ++pos) {
        // layer 0's K/V do not depend on attention: identical; deeper layers see the quantized cache
        EXPECT_LE(rel(rb.k(0, pos), ra.k(0, pos), row), 1e-6);
        EXPECT_LE(rel(rb.v(0, pos), ra.v(0, pos), row), 1e-6);
        EXPECT_LE(rel(rb.k(2, pos), ra.k(2, pos), row), 0.1);
    }
}

INSTANTIATE_TEST_SUITE_P(Archs, ArchTest, ::testing::ValuesIn(kArchs),
                         [](const auto & info) { return std::string(info.param.arch); });

}  // namespace
