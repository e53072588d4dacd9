// CoE scores: batch reference, streaming token chain, running-mean layer chain. See include/kvlens/coe.h.
#include "kvlens/coe.h"

#include <cmath>
#include <string>

#include "kvlens/error.h"

namespace kvlens {

namespace {

double norm(const double * a, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += a[i] * a[i];
    return std::sqrt(s);
}

double dist(const double * a, const double * b, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
    return std::sqrt(s);
}

// Angle between a and b in [0, π]: arccos of the cosine clipped to [−1, 1], computed in the numerically
// stable form 2·atan2(‖â − b̂‖, ‖â + b̂‖) (exactly 0 for parallel vectors). A zero vector has angle 0.
double angle(const double * a, const double * b, int n) {
    const double na = norm(a, n), nb = norm(b, n);
    if (na == 0 || nb == 0) return 0;
    double diff = 0, sum = 0;
    for (int i = 0; i < n; ++i) {
        const double u = a[i] / na, v = b[i] / nb;
        diff += (u - v) * (u - v);
        sum += (u + v) * (u + v);
    }
    return 2 * std::atan2(std::sqrt(diff), std::sqrt(sum));
}

void to_double(const float * x, int dim, bool l2, std::vector<double> & out) {
    out.resize(dim);
    for (int i = 0; i < dim; ++i) out[i] = x[i];
    if (!l2) return;
    const double n = norm(out.data(), dim);
    if (n > 0)
        for (double & v : out) v /= n;
}

}  // namespace

std::optional<CoeScores> CoeSteps::scores(double D, double Theta) const {
    const int n = size();
    if (n < 1 || !(D > 0) || !(Theta > 0) || !std::isfinite(D) || !std::isfinite(Theta)) return std::nullopt;
    double mag = 0, ang = 0, cx = 0, cy = 0;
    for (int i = 0; i < n; ++i) {
        const double m = d_[i] / D, a = theta_[i] / Theta;
        mag += m;
        ang += a;
        cx += m * std::cos(a);
        cy += m * std::sin(a);
    }
    CoeScores s;
    s.mag = mag / n;
    s.ang = ang / n;
    s.r = s.mag - s.ang;
    s.c = std::sqrt((cx / n) * (cx / n) + (cy / n) * (cy / n));
    if (!std::isfinite(s.mag) || !std::isfinite(s.ang) || !std::isfinite(s.c)) return std::nullopt;
    return s;
}

std::optional<CoeScores> coe_scores(const std::vector<std::vector<float>> & chain) {
    if (chain.size() < 2) return std::nullopt;
    const int dim = (int) chain[0].size();
    std::vector<std::vector<double>> x(chain.size());
    for (size_t i = 0; i < chain.size(); ++i) {
        if ((int) chain[i].size() != dim)
            throw Error("coe_scores: vector " + std::to_string(i) + " has size " + std::to_string(chain[i].size()) +
                        ", expected " + std::to_string(dim));
        to_double(chain[i].data(), dim, false, x[i]);
    }
    const size_t N = x.size() - 1;
    CoeSteps steps;
    for (size_t i = 0; i < N; ++i)
        steps.add(dist(x[i + 1].data(), x[i].data(), dim), angle(x[i + 1].data(), x[i].data(), dim));
    return steps.scores(dist(x[N].data(), x[0].data(), dim), angle(x[N].data(), x[0].data(), dim));
}

// ---- token axis -------------------------------------------------------------------------------

void CoeTokenChain::push(const float * x, int dim) {
    if (dim <= 0) throw Error("CoeTokenChain: vector size must be positive");
    if (n_ > 0 && dim != this->dim())
        throw Error("CoeTokenChain: vector size " + std::to_string(dim) + ", expected " + std::to_string(this->dim()));
    to_double(x, dim, l2_, cur_);
    if (n_ == 0) {
        first_ = cur_;
    } else {
        steps_.add(dist(cur_.data(), prev_.data(), dim), angle(cur_.data(), prev_.data(), dim));
    }
    prev_.swap(cur_);
    ++n_;
}

std::optional<CoeScores> CoeTokenChain::result() const {
    if (n_ < 2) return std::nullopt;
    const int d = dim();
    return steps_.scores(dist(prev_.data(), first_.data(), d), angle(prev_.data(), first_.data(), d));
}

void CoeTokenChain::reset() {
    n_ = 0;
    first_.clear();
    prev_.clear();
    cur_.clear();
    steps_.clear();
}

// ---- layer axis -------------------------------------------------------------------------------

void CoeLayerChain::reset(int n_slots) {
    if (n_slots < 0) throw Error("CoeLayerChain: negative slot count");
    dim_ = 0;
    sum_.assign(n_slots, {});
    count_.assign(n_slots, 0);
}

void CoeLayerChain::accumulate(int slot, const float * x, int dim) {
    if (slot < 0 || slot >= n_slots())
        throw Error("CoeLayerChain: slot " + std::to_string(slot) + " out of range [0, " + std::to_string(n_slots()) + ")");
    if (dim <= 0) throw Error("CoeLayerChain: vector size must be positive");
    if (dim_ == 0) dim_ = dim;
    if (dim != dim_)
        throw Error("CoeLayerChain: vector size " + std::to_string(dim) + ", expected " + std::to_string(dim_));
    std::vector<double> & s = sum_[slot];
    if (s.empty()) s.assign(dim, 0.0);
    for (int i = 0; i < dim; ++i) s[i] += x[i];
    ++count_[slot];
}

std::vector<std::vector<float>> CoeLayerChain::means() const {
    std::vector<std::vector<float>> out(n_slots());
    for (int l = 0; l < n_slots(); ++l) {
        if (count_[l] == 0) continue;
        out[l].resize(dim_);
        for (int i = 0; i < dim_; ++i) out[l][i] = (float) (sum_[l][i] / count_[l]);
    }
    return out;
}

std::optional<CoeScores> CoeLayerChain::result() const {
    const int L = n_slots();
    if (L < 2) return std::nullopt;
    for (long c : count_)
        if (c == 0) return std::nullopt;
    std::vector<std::vector<double>> x(L, std::vector<double>(dim_));
    for (int l = 0; l < L; ++l)
        for (int i = 0; i < dim_; ++i) x[l][i] = sum_[l][i] / count_[l];
    CoeSteps steps;
    for (int l = 0; l + 1 < L; ++l)
        steps.add(dist(x[l + 1].data(), x[l].data(), dim_), angle(x[l + 1].data(), x[l].data(), dim_));
    return steps.scores(dist(x[L - 1].data(), x[0].data(), dim_), angle(x[L - 1].data(), x[0].data(), dim_));
}

}  // namespace kvlens
