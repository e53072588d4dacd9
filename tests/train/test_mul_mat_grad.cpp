// ggml's mul_mat backward, which kvlens-train's graph relies on (every linear layer, and attention with K/V
// broadcast over the query heads of a GQA group), checked against gradients computed on the host.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ggml-cpu.h"
#include "ggml.h"

namespace {

void fill(ggml_tensor * t, std::mt19937 & rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    float * d = static_cast<float *>(t->data);
    for (int64_t i = 0; i < ggml_nelements(t); ++i) d[i] = nd(rng);
}

// loss = sum(c * mul_mat(a, b)) for a fixed random c, so dloss/dmul_mat = c and
// da[k, i, g] = sum over j and the src1 batches r mapped to g of b[k, j, r] c[i, j, r]; db likewise.
void check(int64_t K, int64_t M, int64_t N, int64_t A2, int64_t B2) {
    ggml_init_params ip = {64 * 1024 * 1024, nullptr, false};
    ggml_context * ctx = ggml_init(ip);
    std::mt19937 rng(7);
    ggml_tensor * a = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, K, M, A2);
    ggml_tensor * b = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, K, N, B2);
    ggml_tensor * c = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, M, N, B2);
    fill(a, rng);
    fill(b, rng);
    fill(c, rng);
    ggml_set_param(a);
    ggml_set_param(b);
    ggml_tensor * loss = ggml_sum(ctx, ggml_mul(ctx, ggml_mul_mat(ctx, a, b), c));
    ggml_set_loss(loss);
    ggml_cgraph * g = ggml_new_graph_custom(ctx, 1024, true);
    ggml_build_forward_expand(g, loss);
    ggml_build_backward_expand(ctx, g, nullptr);
    ggml_graph_reset(g);
    ASSERT_EQ(ggml_graph_compute_with_ctx(ctx, g, 2), GGML_STATUS_SUCCESS);

    const float * A = static_cast<float *>(a->data);
    const float * B = static_cast<float *>(b->data);
    const float * C = static_cast<float *>(c->data);
    const float * dA = static_cast<float *>(ggml_graph_get_grad(g, a)->data);
    const float * dB = static_cast<float *>(ggml_graph_get_grad(g, b)->data);
    const int64_t per = B2 / A2;  // src1 batches per src0 batch (consecutive, as in ggml's broadcast)
    double worst = 0;
    for (int64_t ga = 0; ga < A2; ++ga)
        for (int64_t i = 0; i < M; ++i)
            for (int64_t k = 0; k < K; ++k) {
                double s = 0;
                for (int64_t r = ga * per; r < (ga + 1) * per; ++r)
                    for (int64_t j = 0; j < N; ++j) s += double(B[(r * N + j) * K + k]) * C[(r * N + j) * M + i];
                worst = std::max(worst, std::fabs(s - dA[(ga * M + i) * K + k]) / (1 + std::fabs(s)));
            }
    for (int64_t r = 0; r < B2; ++r)
        for (int64_t j = 0; j < N; ++j)
            for (int64_t k = 0; k < K; ++k) {
                double s = 0;
                for (int64_t i = 0; i < M; ++i) s += double(A[((r / per) * M + i) * K + k]) * C[(r * N + j) * M + i];
                worst = std::max(worst, std::fabs(s - dB[(r * N + j) * K + k]) / (1 + std::fabs(s)));
            }
    EXPECT_LT(worst, 1e-4) << "K " << K << " M " << M << " N " << N << " src0 batches " << A2 << " src1 batches " << B2;
    ggml_free(ctx);
}

}  // namespace

TEST(MulMatGrad, WeightTimesActivations) { check(48, 40, 70, 1, 1); }
TEST(MulMatGrad, BroadcastSrc0OverSrc1AsInGqaAttention) { check(32, 24, 24, 2, 8); }
