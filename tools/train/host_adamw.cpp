#include "host_adamw.h"

#include <algorithm>
#include <cmath>

namespace kvlens::train {

double HostAdamw::step(ggml_opt_context_t opt, const Weights & w, double lr) {
    const size_t n = w.trained.size();
    if (m.empty()) {
        m.resize(n);
        v.resize(n);
        for (size_t i = 0; i < n; ++i) {
            m[i].assign(ggml_nelements(w.trained[i]), 0.0f);
            v[i].assign(ggml_nelements(w.trained[i]), 0.0f);
        }
    }
    std::vector<std::vector<float>> g(n);
    double sq = 0;
    bool finite = true;
    for (size_t i = 0; i < n; ++i) {
        ggml_tensor * acc = ggml_opt_grad_acc(opt, w.trained[i]);
        g[i].resize(ggml_nelements(w.trained[i]));
        ggml_backend_tensor_get(acc, g[i].data(), 0, ggml_nbytes(acc));
        for (float & x : g[i]) {
            x *= float(kHostAdamwPeriod);  // undo ggml-opt's loss scale
            if (!std::isfinite(x)) finite = false;
            sq += double(x) * x;
        }
    }
    ggml_opt_reset(opt, /*optimizer=*/false);  // zero the accumulators for the next step
    const double norm = std::sqrt(sq);
    double median = 0;
    if (norms.size() >= 20) {
        std::vector<double> s(norms.begin(), norms.end());
        std::nth_element(s.begin(), s.begin() + s.size() / 2, s.end());
        median = s[s.size() / 2];
    }
    if (!finite || !std::isfinite(norm) || (median > 0 && norm > skip_factor * median)) {
        ++skipped;
        return -1;
    }
    norms.push_back(norm);
    if (norms.size() > 200) norms.pop_front();
    ++t;
    const double bc1 = 1 - std::pow(beta1, double(t)), bc2 = 1 - std::pow(beta2, double(t));
    std::vector<float> wt;
    for (size_t i = 0; i < n; ++i) {
        wt.resize(g[i].size());
        ggml_backend_tensor_get(w.trained[i], wt.data(), 0, ggml_nbytes(w.trained[i]));
        float * mi = m[i].data();
        float * vi = v[i].data();
        const float * ai = anchor > 0 && !w0.empty() ? w0[i].data() : nullptr;
        for (size_t k = 0; k < wt.size(); ++k) {
            const double gk = std::clamp(double(g[i][k]), -clamp, clamp);
            mi[k] = float(beta1 * mi[k] + (1 - beta1) * gk);
            vi[k] = float(beta2 * vi[k] + (1 - beta2) * gk * gk);
            const double upd = (mi[k] / bc1) / (std::sqrt(vi[k] / bc2) + eps);
            double wk = wt[k] * (1 - lr * wd) - lr * upd;  // decoupled decay, as ggml's AdamW
            if (ai) wk -= lr * anchor * (double(wt[k]) - ai[k]);
            wt[k] = float(wk);
        }
        ggml_backend_tensor_set(w.trained[i], wt.data(), 0, ggml_nbytes(w.trained[i]));
    }
    return norm;
}

}  // namespace kvlens::train
