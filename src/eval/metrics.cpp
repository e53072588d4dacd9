// AUROC, FPR@TPR, AUPR (average precision and trapezoid), ROC points, accuracy. See include/kvlens/metrics.h.
#include "kvlens/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "kvlens/error.h"

namespace kvlens {

namespace {

void check_input(const std::vector<double> & scores, const std::vector<int> & labels) {
    if (scores.size() != labels.size())
        throw Error("metrics: " + std::to_string(scores.size()) + " scores but " + std::to_string(labels.size()) +
                    " labels");
    for (size_t i = 0; i < scores.size(); ++i) {
        if (labels[i] != 0 && labels[i] != 1)
            throw Error("metrics: label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                        " (expected 0 or 1)");
        if (!std::isfinite(scores[i])) throw Error("metrics: non-finite score at index " + std::to_string(i));
    }
}

// Cumulative counts after each group of equal scores, scores descending.
struct Step {
    double threshold;
    long tp, fp;
};

std::vector<Step> threshold_steps(const std::vector<double> & scores, const std::vector<int> & labels) {
    check_input(scores, labels);
    std::vector<size_t> idx(scores.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    std::vector<Step> steps;
    long tp = 0, fp = 0;
    for (size_t i = 0; i < idx.size(); ++i) {
        (labels[idx[i]] ? tp : fp) += 1;
        if (i + 1 == idx.size() || scores[idx[i + 1]] != scores[idx[i]]) steps.push_back({scores[idx[i]], tp, fp});
    }
    return steps;
}

}  // namespace

std::vector<RocPoint> roc_curve(const std::vector<double> & scores, const std::vector<int> & labels) {
    auto steps = threshold_steps(scores, labels);
    if (steps.empty()) return {};
    const double P = (double) steps.back().tp, N = (double) steps.back().fp;
    if (P == 0 || N == 0) return {};
    std::vector<RocPoint> roc{{0.0, 0.0, INFINITY}};
    for (const Step & s : steps) roc.push_back({s.fp / N, s.tp / P, s.threshold});
    return roc;
}

std::optional<double> roc_area(const std::vector<RocPoint> & roc) {
    if (roc.size() < 2) return std::nullopt;
    double a = 0;
    for (size_t i = 1; i < roc.size(); ++i)
        a += (roc[i].fpr - roc[i - 1].fpr) * (roc[i].tpr + roc[i - 1].tpr) / 2;
    return a;
}

std::optional<double> auroc(const std::vector<double> & scores, const std::vector<int> & labels) {
    return roc_area(roc_curve(scores, labels));
}

std::optional<double> fpr_at_tpr(const std::vector<double> & scores, const std::vector<int> & labels, double tpr) {
    if (!(tpr >= 0 && tpr <= 1)) throw Error("fpr_at_tpr: target TPR must be in [0, 1]");
    auto roc = roc_curve(scores, labels);
    if (roc.empty()) return std::nullopt;
    for (size_t j = 0; j < roc.size(); ++j) {
        if (roc[j].tpr < tpr) continue;
        if (j == 0) return roc[0].fpr;
        const RocPoint & a = roc[j - 1];
        const RocPoint & b = roc[j];
        return a.fpr + (tpr - a.tpr) * (b.fpr - a.fpr) / (b.tpr - a.tpr);  // b.tpr > a.tpr here
    }
    return roc.back().fpr;  // not reached: the last point has TPR 1
}

std::optional<double> fpr95(const std::vector<double> & scores, const std::vector<int> & labels) {
    return fpr_at_tpr(scores, labels, 0.95);
}

std::optional<double> aupr(const std::vector<double> & scores, const std::vector<int> & labels) {
    auto steps = threshold_steps(scores, labels);
    if (steps.empty() || steps.back().tp == 0) return std::nullopt;
    const double P = (double) steps.back().tp;
    double ap = 0, prev_recall = 0;
    for (const Step & s : steps) {
        const double recall = s.tp / P, precision = (double) s.tp / (s.tp + s.fp);
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    return ap;
}

std::optional<double> aupr_trapezoid(const std::vector<double> & scores, const std::vector<int> & labels) {
    auto steps = threshold_steps(scores, labels);
    if (steps.empty() || steps.back().tp == 0) return std::nullopt;
    const long P = steps.back().tp;
    double area = 0, r0 = 0, p0 = 1;  // start at (recall 0, precision 1)
    for (const Step & s : steps) {
        const double r = (double) s.tp / P, p = (double) s.tp / (s.tp + s.fp);
        area += (r - r0) * (p + p0) / 2;
        r0 = r;
        p0 = p;
        if (s.tp == P) break;
    }
    return area;
}

std::optional<double> accuracy(const std::vector<int> & correct) {
    if (correct.empty()) return std::nullopt;
    long n = 0;
    for (size_t i = 0; i < correct.size(); ++i) {
        if (correct[i] != 0 && correct[i] != 1)
            throw Error("accuracy: value " + std::to_string(correct[i]) + " at index " + std::to_string(i) +
                        " (expected 0 or 1)");
        n += correct[i];
    }
    return (double) n / correct.size();
}

SelfEvalMetrics self_eval_metrics(const std::vector<double> & scores, const std::vector<int> & labels) {
    return {auroc(scores, labels), fpr95(scores, labels), aupr(scores, labels)};
}

namespace {
// The q-quantile of sorted values, nearest rank.
double sorted_quantile(const std::vector<double> & v, double q) {
    return v[std::min(v.size() - 1, (size_t) (q * (v.size() - 1) + 0.5))];
}
}  // namespace

std::optional<double> AurocBootstrap::quantile(size_t score, double q) const {
    if (n == 0) return std::nullopt;
    std::vector<double> v = auroc[score];
    std::sort(v.begin(), v.end());
    return sorted_quantile(v, q);
}

AurocBootstrap::Diff AurocBootstrap::difference(size_t a, size_t b) const {
    Diff r;
    if (n == 0) return r;
    std::vector<double> d(n);
    for (int k = 0; k < n; ++k) {
        d[k] = auroc[a][k] - auroc[b][k];
        r.mean += d[k] / n;
        r.p_first_higher += (d[k] > 0 ? 1.0 : d[k] == 0 ? 0.5 : 0.0) / n;
    }
    std::sort(d.begin(), d.end());
    r.lo = sorted_quantile(d, 0.025);
    r.hi = sorted_quantile(d, 0.975);
    return r;
}

AurocBootstrap bootstrap_auroc(const std::vector<std::vector<double>> & scores, const std::vector<int> & labels,
                               int n_resamples, uint64_t seed) {
    AurocBootstrap b;
    for (const auto & s : scores)
        if (s.size() != labels.size()) throw Error("bootstrap_auroc: a score column and the labels differ in size");
    const int n_pos = (int) std::count(labels.begin(), labels.end(), 1);
    if (n_resamples <= 0 || n_pos == 0 || n_pos == (int) labels.size()) return b;
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<size_t> pick(0, labels.size() - 1);
    b.auroc.assign(scores.size(), {});
    std::vector<size_t> idx(labels.size());
    std::vector<int> l(labels.size());
    std::vector<double> v(labels.size());
    while (b.n < n_resamples) {
        int pos = 0;
        for (size_t k = 0; k < idx.size(); ++k) idx[k] = pick(rng), l[k] = labels[idx[k]], pos += l[k];
        if (pos == 0 || pos == (int) idx.size()) continue;
        for (size_t i = 0; i < scores.size(); ++i) {
            for (size_t k = 0; k < idx.size(); ++k) v[k] = scores[i][idx[k]];
            b.auroc[i].push_back(*auroc(v, l));
        }
        ++b.n;
    }
    return b;
}

}  // namespace kvlens
