// KvClassifier: MLP on ggml-opt (Adam/AdamW, MSE), held-out split, best checkpoint; plain C++ predict.
#include "kvlens/probe.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml-opt.h"
#include "ggml.h"
#include "kvlens/error.h"

namespace kvlens {

ProbeFingerprint ProbeFingerprint::of(const ModelFacts & f) {
    return {f.arch, f.n_layer, f.n_head_kv, f.head_dim_k};
}

std::string ProbeFingerprint::describe() const {
    return arch + " L" + std::to_string(n_layer) + " kv" + std::to_string(n_head_kv) + "x" + std::to_string(head_dim);
}

KvClassifier KvClassifier::constant(ProbeMeta meta, int input_dim, float score, int hidden) {
    if (input_dim <= 0 || hidden <= 0) throw Error("KvClassifier::constant: bad shape");
    KvClassifier c;
    meta.input_dim = input_dim;
    meta.hidden = hidden;
    c.meta_ = meta;
    c.mu_.assign(input_dim, 0.0f);
    c.sd_.assign(input_dim, 1.0f);
    c.w1_.assign((size_t) input_dim * hidden, 0.0f);
    c.b1_.assign(hidden, 0.0f);
    c.w2_.assign(hidden, 0.0f);
    c.b2_ = score / 100.0f;
    return c;
}

float KvClassifier::predict(const std::vector<float> & x) const { return predict(x.data(), (int) x.size()); }

float KvClassifier::predict(const float * x, int dim) const {
    if (empty()) throw Error("KvClassifier: not trained or loaded");
    if (dim != meta_.input_dim)
        throw Error("KvClassifier: feature of width " + std::to_string(dim) + ", the classifier takes " +
                    std::to_string(meta_.input_dim));
    const int n = meta_.input_dim, h = meta_.hidden;
    std::vector<float> xs(n);
    for (int i = 0; i < n; ++i) xs[i] = (x[i] - mu_[i]) / sd_[i];
    double z = b2_;
    for (int j = 0; j < h; ++j) {
        const float * w = w1_.data() + (size_t) j * n;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // eight lanes: the compiler vectorises this
        int i = 0;
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; ++k) acc[k] += w[i + k] * xs[i + k];
        double a = b1_[j];
        for (; i < n; ++i) a += (double) w[i] * xs[i];
        for (float v : acc) a += v;
        if (a > 0) z += a * w2_[j];
    }
    return (float) (100.0 * z);
}

void KvClassifier::check_model(const ModelFacts & facts) const {
    ProbeFingerprint f = ProbeFingerprint::of(facts);
    if (!(f == meta_.model))
        throw Error("classifier was trained for " + meta_.model.describe() + ", this model is " + f.describe());
}

void KvClassifier::check_window(const WindowConfig & w) const {
    if (w.describe() != meta_.window.describe())
        throw Error("classifier settings differ: trained with '" + meta_.window.describe() + "', asked for '" +
                    w.describe() + "'");
}

namespace {

struct Split {
    std::vector<int> train, val;
};

Split split_rows(int n, const std::vector<int> & groups, double val_frac, uint64_t seed) {
    std::vector<int> g = groups;
    if (g.empty()) {
        g.resize(n);
        std::iota(g.begin(), g.end(), 0);
    }
    std::vector<int> ids(std::set<int>(g.begin(), g.end()).size());
    {
        std::set<int> u(g.begin(), g.end());
        std::copy(u.begin(), u.end(), ids.begin());
    }
    std::mt19937_64 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    int n_val = (int) std::lround(val_frac * ids.size());
    if (val_frac > 0 && n_val == 0 && ids.size() >= 2) n_val = 1;
    if (n_val >= (int) ids.size()) n_val = (int) ids.size() - 1;
    std::set<int> val_ids(ids.begin(), ids.begin() + n_val);
    Split s;
    for (int i = 0; i < n; ++i) (val_ids.count(g[i]) ? s.val : s.train).push_back(i);
    return s;
}

ggml_opt_optimizer_params opt_pars(void * ud) {
    const auto * p = static_cast<const ProbeTrainParams *>(ud);
    ggml_opt_optimizer_params o = ggml_opt_get_default_optimizer_params(nullptr);
    o.adamw.alpha = (float) p->lr;
    o.adamw.wd = (float) p->weight_decay;
    return o;
}

}  // namespace

KvClassifier KvClassifier::train(const std::vector<std::vector<float>> & X, const std::vector<float> & y, ProbeMeta meta,
                                 const ProbeTrainParams & P, const std::vector<int> & groups) {
    if (X.empty()) throw Error("probe train: no examples");
    if (X.size() != y.size()) throw Error("probe train: features and labels differ in count");
    if (!groups.empty() && groups.size() != X.size()) throw Error("probe train: groups and features differ in count");
    // NaN-safe: every check is written so that NaN fails it (ggml-opt asserts on a negative or NaN decay)
    if (P.hidden <= 0 || P.batch <= 0 || P.epochs <= 0 || !((float) P.lr > 0 && std::isfinite((float) P.lr)))
        throw Error("probe train: hidden, batch, epochs, lr must be positive (and lr finite)");
    if (!(P.val_frac >= 0 && P.val_frac < 1)) throw Error("probe train: validation fraction must be in [0, 1)");
    if (!(P.weight_decay >= 0 && P.weight_decay <= 1)) throw Error("probe train: weight decay must be in [0, 1]");
    const int n_in = (int) X[0].size();
    for (auto & r : X)
        if ((int) r.size() != n_in) throw Error("probe train: feature rows differ in width");
    const int H = P.hidden;

    Split sp = split_rows((int) X.size(), groups, P.val_frac, P.seed);
    if (sp.train.empty()) throw Error("probe train: empty training split");

    KvClassifier c;
    meta.input_dim = n_in;
    meta.hidden = H;
    meta.n_train = (int) sp.train.size();
    meta.n_val = (int) sp.val.size();
    c.meta_ = meta;
    // standardisation on the training split
    c.mu_.assign(n_in, 0.0f);
    c.sd_.assign(n_in, 1.0f);
    {
        std::vector<double> m(n_in, 0.0), s(n_in, 0.0);
        for (int i : sp.train)
            for (int j = 0; j < n_in; ++j) m[j] += X[i][j];
        for (auto & v : m) v /= sp.train.size();
        for (int i : sp.train)
            for (int j = 0; j < n_in; ++j) s[j] += (X[i][j] - m[j]) * (X[i][j] - m[j]);
        // a near-constant coordinate must not blow up on unseen rows: std floored at 1% of the mean std
        double mean_sd = 0;
        for (int j = 0; j < n_in; ++j) mean_sd += std::sqrt(s[j] / sp.train.size()) / n_in;
        const double floor_sd = mean_sd > 0 ? 0.01 * mean_sd : 1.0;
        for (int j = 0; j < n_in; ++j) {
            c.mu_[j] = (float) m[j];
            c.sd_[j] = (float) std::max(std::sqrt(s[j] / sp.train.size()), floor_sd);
        }
    }

    const int B = std::min<int>(P.batch, (int) sp.train.size());
    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, std::max(1, P.threads));

    ggml_init_params wp = {ggml_tensor_overhead() * 8, nullptr, true};
    ggml_context * ctx_w = ggml_init(wp);
    ggml_tensor * w1 = ggml_new_tensor_2d(ctx_w, GGML_TYPE_F32, n_in, H);
    ggml_tensor * b1 = ggml_new_tensor_1d(ctx_w, GGML_TYPE_F32, H);
    ggml_tensor * w2 = ggml_new_tensor_2d(ctx_w, GGML_TYPE_F32, H, 1);
    ggml_tensor * b2 = ggml_new_tensor_1d(ctx_w, GGML_TYPE_F32, 1);
    ggml_tensor * x = ggml_new_tensor_2d(ctx_w, GGML_TYPE_F32, n_in, B);
    ggml_set_input(x);
    for (ggml_tensor * t : {w1, b1, w2, b2}) ggml_set_param(t);
    ggml_backend_buffer_t buf_w = ggml_backend_alloc_ctx_tensors(ctx_w, backend);

    // He-uniform init, seeded
    std::mt19937_64 rng(P.seed ^ 0x5DEECE66Dull);
    // the output layer starts small and its bias at the mean label: training starts from the constant predictor
    auto init = [&](ggml_tensor * t, int fan_in, float scale, float fill = 0.0f) {
        std::vector<float> v(ggml_nelements(t), fill);
        if (scale > 0) {
            const float a = scale * std::sqrt(6.0f / fan_in);
            std::uniform_real_distribution<float> u(-a, a);
            for (auto & e : v) e = u(rng);
        }
        ggml_backend_tensor_set(t, v.data(), 0, ggml_nbytes(t));
    };
    double y_mean = 0;
    for (int i : sp.train) y_mean += y[i] / 100.0 / sp.train.size();
    init(w1, n_in, 1.0f);
    init(b1, n_in, 0.0f);
    init(w2, H, 0.1f);
    init(b2, H, 0.0f, (float) y_mean);

    ggml_init_params cp = {ggml_tensor_overhead() * 1024 + 4 * ggml_graph_overhead_custom(GGML_DEFAULT_GRAPH_SIZE, true), nullptr, true};
    ggml_context * ctx_c = ggml_init(cp);
    ggml_tensor * h = ggml_relu(ctx_c, ggml_add(ctx_c, ggml_mul_mat(ctx_c, w1, x), b1));
    ggml_tensor * out = ggml_add(ctx_c, ggml_mul_mat(ctx_c, w2, h), b2);

    ggml_backend_sched_t sched = ggml_backend_sched_new(&backend, nullptr, 1, GGML_DEFAULT_GRAPH_SIZE, false, false);
    ggml_opt_params op = ggml_opt_default_params(sched, GGML_OPT_LOSS_TYPE_MEAN_SQUARED_ERROR);
    op.ctx_compute = ctx_c;
    op.inputs = x;
    op.outputs = out;
    op.optimizer = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    op.get_opt_pars = opt_pars;
    op.get_opt_pars_ud = const_cast<ProbeTrainParams *>(&P);
    ggml_opt_context_t opt = ggml_opt_init(op);

    auto pull = [&](KvClassifier & k) {
        k.w1_.resize((size_t) n_in * H);
        k.b1_.resize(H);
        k.w2_.resize(H);
        ggml_backend_tensor_get(w1, k.w1_.data(), 0, ggml_nbytes(w1));
        ggml_backend_tensor_get(b1, k.b1_.data(), 0, ggml_nbytes(b1));
        ggml_backend_tensor_get(w2, k.w2_.data(), 0, ggml_nbytes(w2));
        ggml_backend_tensor_get(b2, &k.b2_, 0, sizeof(float));
    };
    auto mse = [&](const KvClassifier & k, const std::vector<int> & rows) {
        double s = 0;
        for (int i : rows) {
            double d = k.predict(X[i]) - y[i];
            s += d * d;
        }
        return rows.empty() ? 0.0 : s / rows.size();
    };

    std::vector<float> xb((size_t) n_in * B), yb(B);
    std::vector<int> order = sp.train;
    double best = INFINITY;
    int since_best = 0;
    KvClassifier best_c = c;
    int diverged = 0;  // the epoch whose loss was not finite (training cannot recover from NaN weights)
    for (int ep = 0; ep < P.epochs; ++ep) {
        std::shuffle(order.begin(), order.end(), rng);
        for (size_t i0 = 0; i0 < order.size(); i0 += B) {
            for (int b = 0; b < B; ++b) {
                // a short last batch is filled with random training rows (the graph's batch is fixed)
                int r = i0 + b < order.size() ? order[i0 + b] : order[rng() % order.size()];
                for (int j = 0; j < n_in; ++j) xb[(size_t) b * n_in + j] = (X[r][j] - c.mu_[j]) / c.sd_[j];
                yb[b] = y[r] / 100.0f;
            }
            ggml_opt_alloc(opt, true);
            ggml_backend_tensor_set(x, xb.data(), 0, ggml_nbytes(x));
            ggml_backend_tensor_set(ggml_opt_labels(opt), yb.data(), 0, ggml_nbytes(ggml_opt_labels(opt)));
            ggml_opt_eval(opt, nullptr);
        }
        pull(c);
        const double tr = mse(c, sp.train);
        const double va = sp.val.empty() ? tr : mse(c, sp.val);
        if (P.on_epoch) P.on_epoch(ep + 1, tr, va);
        if (!std::isfinite(tr) || !std::isfinite(va)) {
            diverged = ep + 1;
            break;
        }
        if (va < best) {
            best = va;
            best_c = c;
            since_best = 0;
        } else if (P.patience > 0 && ++since_best >= P.patience) {
            break;
        }
    }
    best_c.meta_.val_mse = best;

    ggml_opt_free(opt);
    ggml_backend_sched_free(sched);
    ggml_free(ctx_c);
    ggml_backend_buffer_free(buf_w);
    ggml_free(ctx_w);
    ggml_backend_free(backend);
    if (diverged)
        throw Error("probe train: the loss is not finite at epoch " + std::to_string(diverged) +
                    " (training diverged: lower --lr)");
    return best_c;
}

}  // namespace kvlens
