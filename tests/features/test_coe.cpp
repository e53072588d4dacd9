// CoE scores: hand-computed chains, degenerate cases, streaming == batch, and the tap consumer.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvlens/coe.h"
#include "kvlens/error.h"

using namespace kvlens;

namespace {

const double kPi = 3.14159265358979323846;

std::vector<std::vector<float>> random_chain(int n, int dim, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<std::vector<float>> c(n, std::vector<float>(dim));
    for (auto & x : c)
        for (float & v : x) v = g(rng) + 0.5f;  // a common offset keeps the chain away from the origin
    return c;
}

void expect_near(const CoeScores & a, const CoeScores & b, double tol) {
    EXPECT_NEAR(a.mag, b.mag, tol);
    EXPECT_NEAR(a.ang, b.ang, tol);
    EXPECT_NEAR(a.r, b.r, tol);
    EXPECT_NEAR(a.c, b.c, tol);
}

}  // namespace

TEST(CoeScores, QuarterTurnByHand) {
    // (1,0) -> (1,1) -> (0,1): steps of length 1, endpoints √2 apart; step angles π/4, end angle π/2.
    auto s = coe_scores({{1, 0}, {1, 1}, {0, 1}});
    ASSERT_TRUE(s);
    EXPECT_NEAR(s->mag, 1 / std::sqrt(2.0), 1e-12);
    EXPECT_NEAR(s->ang, 0.5, 1e-12);
    EXPECT_NEAR(s->r, 1 / std::sqrt(2.0) - 0.5, 1e-12);
    EXPECT_NEAR(s->c, 1 / std::sqrt(2.0), 1e-12);  // equal steps: C = m
}

TEST(CoeScores, UnequalStepsByHand) {
    // (1,0) -> (2,0) -> (0,2): d = 1, 2√2; D = √5; θ = 0, π/2; Θ = π/2 so a = 0, 1 (normalised angle in cos/sin).
    auto s = coe_scores({{1, 0}, {2, 0}, {0, 2}});
    ASSERT_TRUE(s);
    const double m0 = 1 / std::sqrt(5.0), m1 = 2 * std::sqrt(2.0) / std::sqrt(5.0);
    EXPECT_NEAR(s->mag, (m0 + m1) / 2, 1e-12);
    EXPECT_NEAR(s->ang, 0.5, 1e-12);
    EXPECT_NEAR(s->r, (m0 + m1) / 2 - 0.5, 1e-12);
    const double cx = (m0 * std::cos(0.0) + m1 * std::cos(1.0)) / 2, cy = (m1 * std::sin(1.0)) / 2;
    EXPECT_NEAR(s->c, std::sqrt(cx * cx + cy * cy), 1e-12);
}

TEST(CoeScores, AntiparallelEndsAndRepeatedPoints) {
    // (1,0) -> (1,0) -> (-1,0): the repeated point is a zero step (m = a = 0); end angle π.
    auto s = coe_scores({{1, 0}, {1, 0}, {-1, 0}});
    ASSERT_TRUE(s);
    EXPECT_NEAR(s->mag, 0.5, 1e-12);  // (0 + 2/2) / 2
    EXPECT_NEAR(s->ang, 0.5, 1e-12);  // (0 + π/π) / 2
    EXPECT_NEAR(s->c, std::hypot(std::cos(1.0), std::sin(1.0)) / 2, 1e-12);
}

TEST(CoeScores, DegenerateChainsAreNull) {
    EXPECT_FALSE(coe_scores({}));
    EXPECT_FALSE(coe_scores({{1, 2, 3}}));
    EXPECT_FALSE(coe_scores({{1, 0}, {0, 1}, {1, 0}}));  // closed loop: ‖x_N − x_0‖ = 0
    EXPECT_FALSE(coe_scores({{1, 0}, {0, 1}, {2, 0}}));  // parallel ends: end angle 0
    EXPECT_FALSE(coe_scores({{0, 0}, {0, 1}, {2, 0}}));  // zero vector at an end: end angle 0
    EXPECT_FALSE(coe_scores({{1, 0}, {NAN, 1}, {0, 1}}));
    EXPECT_THROW(coe_scores({{1, 0}, {1, 0, 0}}), Error);
}

TEST(CoeScores, TwoPointsAreDefined) {
    auto s = coe_scores({{1, 0}, {0, 3}});
    ASSERT_TRUE(s);
    EXPECT_NEAR(s->mag, 1, 1e-12);
    EXPECT_NEAR(s->ang, 1, 1e-12);
    EXPECT_NEAR(s->r, 0, 1e-12);
    EXPECT_NEAR(s->c, 1, 1e-12);
}

TEST(CoeScores, AngleIsStableForNearlyParallelVectors) {
    // The cosine of nearly parallel vectors can round above 1; the angle must stay finite and tiny.
    auto s = coe_scores({{1, 1e-7f}, {1, 2e-7f}, {0, 1}});
    ASSERT_TRUE(s);
    EXPECT_TRUE(std::isfinite(s->ang));
    EXPECT_GT(s->ang, 0.49);
}

TEST(CoeTokenChain, StreamingEqualsBatch) {
    auto chain = random_chain(40, 17, 1);
    CoeTokenChain tc;
    for (auto & x : chain) tc.push(x.data(), 17);
    EXPECT_EQ(tc.n_points(), 40);
    auto a = tc.result(), b = coe_scores(chain);
    ASSERT_TRUE(a && b);
    expect_near(*a, *b, 1e-10);
}

TEST(CoeTokenChain, L2NormalisesEachPoint) {
    auto chain = random_chain(12, 5, 2);
    auto normed = chain;
    for (auto & x : normed) {
        double n = 0;
        for (float v : x) n += (double) v * v;
        for (float & v : x) v = (float) (v / std::sqrt(n));
    }
    CoeTokenChain tc(true);
    for (auto & x : chain) tc.push(x.data(), 5);
    auto a = tc.result(), b = coe_scores(normed);
    ASSERT_TRUE(a && b);
    expect_near(*a, *b, 1e-6);
}

TEST(CoeTokenChain, DegenerateAndReset) {
    CoeTokenChain tc;
    EXPECT_FALSE(tc.result());
    float x[2] = {1, 0}, y[2] = {0, 1};
    tc.push(x, 2);
    EXPECT_FALSE(tc.result());
    tc.push(y, 2);
    EXPECT_TRUE(tc.result());
    EXPECT_THROW(tc.push(x, 3), Error);
    tc.push(x, 2);  // back to the start: closed loop
    EXPECT_FALSE(tc.result());
    tc.reset();
    EXPECT_EQ(tc.n_points(), 0);
    tc.push(x, 3 - 1);
    EXPECT_FALSE(tc.result());
}

TEST(CoeLayerChain, RunningMeansEqualBatchOfMeans) {
    const int L = 6, dim = 9, T = 25;
    CoeLayerChain lc(L);
    std::vector<std::vector<double>> sum(L, std::vector<double>(dim, 0));
    auto rows = random_chain(L * T, dim, 3);
    for (int t = 0; t < T; ++t)
        for (int l = 0; l < L; ++l) {
            const auto & r = rows[t * L + l];
            lc.accumulate(l, r.data(), dim);
            for (int i = 0; i < dim; ++i) sum[l][i] += r[i];
        }
    std::vector<std::vector<float>> means(L, std::vector<float>(dim));
    for (int l = 0; l < L; ++l)
        for (int i = 0; i < dim; ++i) means[l][i] = (float) (sum[l][i] / T);
    auto a = lc.result(), b = coe_scores(means);
    ASSERT_TRUE(a && b);
    expect_near(*a, *b, 1e-5);
    EXPECT_EQ(lc.count(0), T);
}

TEST(CoeLayerChain, EmptySlotGivesNullAndBadInputThrows) {
    CoeLayerChain lc(3);
    float x[2] = {1, 0}, y[2] = {0, 1};
    lc.accumulate(0, x, 2);
    lc.accumulate(2, y, 2);
    EXPECT_FALSE(lc.result());
    lc.accumulate(1, y, 2);
    EXPECT_TRUE(lc.result());
    EXPECT_THROW(lc.accumulate(3, x, 2), Error);
    EXPECT_THROW(lc.accumulate(0, x, 1), Error);
    EXPECT_FALSE(CoeLayerChain(1).result());
}

// ---- KvCoeConsumer ------------------------------------------------------------------------------

namespace {

// Deterministic fake rows: k and v of (layer, pos).
std::vector<float> fake_row(int layer, int pos, int which, int n) {
    std::vector<float> r(n);
    for (int i = 0; i < n; ++i) r[i] = std::sin(0.7f * layer + 1.3f * pos + 0.11f * i + 2.0f * which) + 0.3f * layer;
    return r;
}

struct Expected {
    std::vector<std::vector<float>> tokens, layers;
};

// Hand-built chains for layers `ls`, positions [p0, p1), part k/v/kv.
Expected expected_chains(const std::vector<int> & ls, int p0, int p1, KvPart part, int rs) {
    Expected e;
    auto flat = [&](int l, int p) {
        std::vector<float> f;
        auto k = fake_row(l, p, 0, rs), v = fake_row(l, p, 1, rs);
        if (part != KvPart::V) f.insert(f.end(), k.begin(), k.end());
        if (part != KvPart::K) f.insert(f.end(), v.begin(), v.end());
        return f;
    };
    for (int p = p0; p < p1; ++p) {
        std::vector<float> x;
        for (int l : ls) {
            auto f = flat(l, p);
            if (x.empty()) x.assign(f.size(), 0.f);
            for (size_t i = 0; i < f.size(); ++i) x[i] += f[i] / ls.size();
        }
        e.tokens.push_back(x);
    }
    for (int l : ls) {
        std::vector<float> x;
        for (int p = p0; p < p1; ++p) {
            auto f = flat(l, p);
            if (x.empty()) x.assign(f.size(), 0.f);
            for (size_t i = 0; i < f.size(); ++i) x[i] += f[i] / (p1 - p0);
        }
        e.layers.push_back(x);
    }
    return e;
}

void feed_kv(KvCoeConsumer & c, int layer, int pos, int rs) {
    auto k = fake_row(layer, pos, 0, rs), v = fake_row(layer, pos, 1, rs);
    c.on_kv(layer, pos, k.data(), v.data(), rs);
}

// Prompt [0, n_prompt) as one layer-major batch over all model layers, then decode token by token.
void feed_prompt_then_decode(KvCoeConsumer & c, int n_layer, int n_prompt, int n_gen, int rs) {
    for (int l = 0; l < n_layer; ++l)
        for (int p = 0; p < n_prompt; ++p) feed_kv(c, l, p, rs);
    for (int p = n_prompt; p < n_prompt + n_gen; ++p)
        for (int l = 0; l < n_layer; ++l) feed_kv(c, l, p, rs);
}

}  // namespace

TEST(KvCoeConsumer, DecodeMatchesHandBuiltChains) {
    const int rs = 6, n_layer = 5, n_prompt = 4, n_gen = 9;
    for (KvPart part : {KvPart::KV, KvPart::K, KvPart::V}) {
        KvCoeOptions o;
        o.layers = {1, 3, 4};
        o.kv_part = part;
        o.start_pos = n_prompt;
        KvCoeConsumer c(o);
        feed_prompt_then_decode(c, n_layer, n_prompt, n_gen, rs);
        auto e = expected_chains(o.layers, n_prompt, n_prompt + n_gen, part, rs);
        auto tok = c.token_axis(), tok_ref = coe_scores(e.tokens);
        ASSERT_TRUE(tok && tok_ref);
        expect_near(*tok, *tok_ref, 1e-5);
        EXPECT_EQ(c.n_tokens(), n_gen);
        auto lay = c.layer_axis(), lay_ref = coe_scores(e.layers);
        ASSERT_TRUE(lay && lay_ref);
        expect_near(*lay, *lay_ref, 1e-5);
        EXPECT_FALSE(c.hidden());  // no hidden chain configured
    }
}

TEST(KvCoeConsumer, LayerMajorBatchEqualsDecodeOrder) {
    const int rs = 4, n_layer = 4, p0 = 3, p1 = 10;
    KvCoeOptions o;
    o.layers = {0, 2, 3};
    o.start_pos = p0;
    KvCoeConsumer batch(o), decode(o);
    for (int l = 0; l < n_layer; ++l)  // one ubatch holding prompt and generated positions
        for (int p = 0; p < p1; ++p) feed_kv(batch, l, p, rs);
    feed_prompt_then_decode(decode, n_layer, p0, p1 - p0, rs);
    auto a = batch.token_axis(), b = decode.token_axis();
    ASSERT_TRUE(a && b);
    expect_near(*a, *b, 1e-9);
    expect_near(*batch.layer_axis(), *decode.layer_axis(), 1e-9);
}

TEST(KvCoeConsumer, L2OptionMatchesNormalisedChain) {
    const int rs = 5;
    KvCoeOptions o;
    o.layers = {0, 1};
    o.l2_normalize = true;
    KvCoeConsumer c(o);
    feed_prompt_then_decode(c, 2, 0, 7, rs);
    auto e = expected_chains(o.layers, 0, 7, KvPart::KV, rs);
    CoeTokenChain ref(true);
    for (auto & x : e.tokens) ref.push(x.data(), (int) x.size());
    expect_near(*c.token_axis(), *ref.result(), 1e-6);
}

TEST(KvCoeConsumer, MissingLayerIsFoldedAtNextToken) {
    // Layer 2 is chosen but never tapped: each token is folded with the layers it has when the next one starts.
    const int rs = 3;
    KvCoeOptions o;
    o.layers = {0, 1, 2};
    KvCoeConsumer c(o);
    for (int p = 0; p < 6; ++p)
        for (int l = 0; l < 2; ++l) feed_kv(c, l, p, rs);
    EXPECT_EQ(c.n_tokens(), 5);  // the last one is still pending
    auto e = expected_chains({0, 1}, 0, 6, KvPart::KV, rs);
    expect_near(*c.token_axis(), *coe_scores(e.tokens), 1e-6);
    EXPECT_EQ(c.n_tokens(), 6);
    EXPECT_FALSE(c.layer_axis());  // slot of layer 2 is empty
}

TEST(KvCoeConsumer, HiddenChainWithEmbeddingInput) {
    const int n_embd = 8, p0 = 2, p1 = 9;
    KvCoeOptions o;
    o.hidden_layers = {0, 1, 2};
    o.start_pos = p0;
    KvCoeConsumer c(o);
    std::vector<std::vector<float>> ref(4, std::vector<float>(n_embd, 0.f));
    for (int p = 0; p < p1; ++p)
        for (int l = kEmbeddingLayer; l < 3; ++l) {
            auto h = fake_row(l + 7, p, 2, n_embd);
            c.on_hidden(l, p, h.data(), n_embd);
            if (p >= p0)
                for (int i = 0; i < n_embd; ++i) ref[l + 1][i] += h[i] / (p1 - p0);
        }
    auto s = c.hidden(), r = coe_scores(ref);
    ASSERT_TRUE(s && r);
    expect_near(*s, *r, 1e-5);
    EXPECT_FALSE(c.token_axis());  // no KV layers chosen
}

TEST(KvCoeConsumer, HiddenChainWithoutEmbedding) {
    KvCoeOptions o;
    o.hidden_layers = {3, 5};
    o.hidden_embedding = false;
    KvCoeConsumer c(o);
    float a[2] = {1, 0}, b[2] = {0, 2}, z[2] = {5, 5};
    c.on_hidden(kEmbeddingLayer, 0, z, 2);  // ignored
    c.on_hidden(4, 0, z, 2);                // not chosen: ignored
    c.on_hidden(3, 0, a, 2);
    c.on_hidden(5, 0, b, 2);
    expect_near(*c.hidden(), *coe_scores({{1, 0}, {0, 2}}), 1e-12);
}

TEST(KvCoeConsumer, RewindRules) {
    const int rs = 3;
    KvCoeOptions o;
    o.layers = {0, 1};
    o.start_pos = 2;
    KvCoeConsumer c(o);
    feed_prompt_then_decode(c, 2, 2, 5, rs);  // generated positions 2..6
    ASSERT_TRUE(c.token_axis());
    c.on_rewind(10);  // beyond everything: nothing changes
    EXPECT_TRUE(c.valid());
    c.on_rewind(4);  // cuts folded positions: cannot be undone
    EXPECT_FALSE(c.valid());
    EXPECT_FALSE(c.token_axis());
    EXPECT_FALSE(c.layer_axis());
    c.on_rewind(2);  // back to the start of the answer: clean again
    EXPECT_TRUE(c.valid());
    EXPECT_EQ(c.n_tokens(), 0);
    for (int p = 2; p < 7; ++p)
        for (int l = 0; l < 2; ++l) feed_kv(c, l, p, rs);
    auto e = expected_chains(o.layers, 2, 7, KvPart::KV, rs);
    expect_near(*c.token_axis(), *coe_scores(e.tokens), 1e-6);
    c.reset(5);
    EXPECT_EQ(c.options().start_pos, 5);
    EXPECT_FALSE(c.token_axis());
}

TEST(KvCoeConsumer, BadOptionsAndRowsThrow) {
    KvCoeOptions o;
    o.layers = {2, 1};
    EXPECT_THROW(KvCoeConsumer{o}, Error);
    o.layers = {0, 1};
    o.start_pos = -1;
    EXPECT_THROW(KvCoeConsumer{o}, Error);
    o.start_pos = 0;
    KvCoeConsumer c(o);
    feed_kv(c, 0, 0, 4);
    EXPECT_THROW(feed_kv(c, 1, 0, 5), Error);
}
