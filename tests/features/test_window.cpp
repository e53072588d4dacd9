// KvWindow: the streaming window's pooled vector equals a plain reference on stored rows (model-free).
#include <gtest/gtest.h>

#include <random>

#include "kvlens/error.h"
#include "kvlens/window.h"

using namespace kvlens;

namespace {

const PoolShape kShape{2, 3, 8};  // 2 KV heads x 3 dims

// Feed n positions of random rows for layers 0..3 to both the window and a store; K/V position p, layer l.
void feed(std::vector<TapConsumer *> cs, int from, int to, std::mt19937 & rng, int n_layer = 4) {
    std::normal_distribution<float> nd;
    std::vector<float> k(kShape.row_size()), v(kShape.row_size());
    for (int p = from; p < to; ++p)
        for (int l = 0; l < n_layer; ++l) {
            for (auto & x : k) x = nd(rng);
            for (auto & x : v) x = nd(rng);
            for (auto * c : cs) c->on_kv(l, p, k.data(), v.data(), kShape.row_size());
        }
}

void expect_near(const std::vector<float> & a, const std::vector<float> & b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << i;
}

// A hand-computed reference, independent of pool_rows: sum over positions of [K;V], heads flattened, layer mean.
std::vector<float> by_hand(const KvStore & st, const std::vector<int> & layers, int lo, int hi) {
    const int row = kShape.row_size();
    std::vector<double> acc(2 * row, 0.0);
    for (int l : layers) {
        int s = st.slot(l);
        for (int p = lo; p < hi; ++p)
            for (int i = 0; i < row; ++i) {
                acc[i] += st.k(s, p)[i] / layers.size();
                acc[row + i] += st.v(s, p)[i] / layers.size();
            }
    }
    return std::vector<float>(acc.begin(), acc.end());
}

}  // namespace

TEST(Window, PaperDefaultMatchesHandComputation) {
    WindowConfig c;
    c.seq_len = 5;
    std::vector<int> layers = {2, 3};
    KvWindow w(c, kShape, layers);
    KvStore st({0, 1, 2, 3}, kShape.row_size());
    std::mt19937 rng(1);
    feed({&w, &st}, 0, 12, rng);
    EXPECT_EQ(w.end(), 12);
    EXPECT_EQ(w.n_window(), 5);
    EXPECT_EQ(w.dim(), 2 * kShape.row_size());
    expect_near(w.features(), by_hand(st, layers, 7, 12));
}

TEST(Window, AllKnobsMatchReference) {
    std::mt19937 rng(2);
    for (const char * kv : {"kv", "k", "v"})
        for (const char * pos : {"sum", "mean"})
            for (const char * heads : {"flatten", "mean"})
                for (const char * lagg : {"mean", "sum", "flatten"}) {
                    WindowConfig c;
                    c.set("seq-len", "4");
                    c.set("layers", "last:3");
                    c.set("kv-part", kv);
                    c.set("pos", pos);
                    c.set("heads", heads);
                    c.set("layer-agg", lagg);
                    std::vector<int> layers = {1, 2, 3};
                    KvWindow w(c, kShape, layers);
                    KvStore st({0, 1, 2, 3}, kShape.row_size());
                    feed({&w, &st}, 0, 9, rng);
                    SCOPED_TRACE(c.describe());
                    expect_near(w.features(), window_reference(st, c, kShape, layers, 9));
                    EXPECT_EQ((int) w.features().size(), w.dim());
                    EXPECT_EQ(WindowConfig::parse(c.describe()).describe(), c.describe());
                }
}

TEST(Window, ShortSequenceUsesOnlyRealTokens) {
    WindowConfig c;
    c.seq_len = 16;
    KvWindow w(c, kShape, {3});
    KvStore st({3}, kShape.row_size());
    std::mt19937 rng(3);
    feed({&w, &st}, 0, 3, rng, 4);
    EXPECT_EQ(w.n_window(), 3);  // not padded to 16
    expect_near(w.features(), by_hand(st, {3}, 0, 3));
    w.set_start(1);
    expect_near(w.features(), by_hand(st, {3}, 1, 3));
}

TEST(Window, RewindForgetsCutPositionsAndRefills) {
    WindowConfig c;
    c.seq_len = 4;
    KvWindow w(c, kShape, {0, 1});
    KvStore st({0, 1}, kShape.row_size());
    std::mt19937 rng(4);
    feed({&w, &st}, 0, 10, rng, 2);
    w.on_rewind(8);
    st.on_rewind(8);
    EXPECT_EQ(w.end(), 8);
    EXPECT_EQ(w.n_window(), 2);  // 6, 7 are still buffered; 4, 5 were overwritten by 8, 9
    expect_near(w.features(), by_hand(st, {0, 1}, 6, 8));
    feed({&w, &st}, 8, 11, rng, 2);  // new rows for 8..10
    EXPECT_EQ(w.n_window(), 4);
    expect_near(w.features(), by_hand(st, {0, 1}, 7, 11));
    w.on_rewind(0);
    EXPECT_EQ(w.end(), 0);
    EXPECT_THROW(w.features(), Error);
}

TEST(Window, BadSettings) {
    WindowConfig c;
    EXPECT_THROW(c.set("seq-len", "0"), Error);
    EXPECT_THROW(c.set("seq-len", "x"), Error);
    EXPECT_THROW(c.set("pos", "last"), Error);
    EXPECT_THROW(c.set("layer-agg", "last"), Error);
    EXPECT_THROW(c.set("nope", "1"), Error);
    WindowConfig ok;
    KvWindow w(ok, kShape, {0});
    std::vector<float> k(5), v(5);
    EXPECT_THROW(w.on_kv(0, 0, k.data(), v.data(), 5), Error);  // wrong row width
}

TEST(Window, HiddenSourcePoolsTheRowsThatEnterEachLayer) {
    WindowConfig c;
    c.seq_len = 2;
    c.layers = "0,2";
    c.source = EmbedSource::Hidden;
    EXPECT_EQ(WindowConfig::parse(c.describe()).describe(), c.describe());
    EXPECT_NE(c.describe().find("source=hidden"), std::string::npos);
    EXPECT_EQ(WindowConfig().describe().find("source"), std::string::npos);  // KV windows describe as before
    const TapSpec t = window_tap_spec(c, {0, 2});
    EXPECT_FALSE(t.kv);
    EXPECT_TRUE(t.hidden);
    EXPECT_TRUE(t.hidden_embedding);              // layer 0's K/V come from the embedding input
    EXPECT_EQ(t.layers, std::vector<int>({1}));   // layer 2's from layer 1's output
    const PoolShape shape{2, 2, 3};
    KvWindow w(c, shape, {0, 2});
    const float k[4] = {9, 9, 9, 9};
    w.on_kv(0, 0, k, k, 4);  // K/V rows are not what a hidden window reads
    EXPECT_EQ(w.end(), 0);
    const float e0[3] = {1, 2, 3}, e1[3] = {3, 2, 1}, h0[3] = {10, 0, 0}, h1[3] = {0, 10, 0}, other[3] = {7, 7, 7};
    w.on_hidden(kEmbeddingLayer, 0, e0, 3);
    w.on_hidden(kEmbeddingLayer, 1, e1, 3);
    w.on_hidden(1, 0, h0, 3);
    w.on_hidden(1, 1, h1, 3);
    w.on_hidden(2, 0, other, 3);  // layer 2's output enters layer 3: not chosen
    ASSERT_EQ(w.end(), 2);
    EXPECT_EQ(w.dim(), 3);
    // sum over the 2 positions, mean over the 2 layers: ((4,4,4) + (10,10,0)) / 2
    const std::vector<float> f = w.features();
    ASSERT_EQ(f.size(), 3u);
    EXPECT_FLOAT_EQ(f[0], 7);
    EXPECT_FLOAT_EQ(f[1], 7);
    EXPECT_FLOAT_EQ(f[2], 2);
    EXPECT_THROW(w.on_hidden(1, 2, h0, 2), Error);  // wrong width
    WindowConfig bad;
    EXPECT_THROW(bad.set("source", "random"), Error);
}

TEST(Window, TapUnionCoversBothReaders) {
    TapSpec kv;
    kv.layers = {2, 3};
    TapSpec hid;
    hid.layers = {1};
    hid.kv = false;
    hid.hidden = true;
    hid.hidden_embedding = true;
    const TapSpec u = tap_union(kv, hid);
    EXPECT_EQ(u.layers, std::vector<int>({1, 2, 3}));
    EXPECT_TRUE(u.kv);
    EXPECT_TRUE(u.hidden);
    EXPECT_TRUE(u.hidden_embedding);
    EXPECT_EQ(tap_union(TapSpec{}, kv).layers, kv.layers);
}
