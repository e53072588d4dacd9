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
