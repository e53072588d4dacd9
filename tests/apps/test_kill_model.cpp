// Kill tests (issue 16): `coe -o`, `probe prep -o` and `think -o` killed with SIGKILL at random points and run
// again until they finish. The finished file must equal an uninterrupted run's, line for line: no record lost,
// none duplicated, no torn line — whatever instant the kill landed (model load, mid-generation, mid-write).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <random>
#include <set>
#include <signal.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace kvlens {
namespace {

using Clock = std::chrono::steady_clock;

std::string reasoner() { return test::source_dir() + "/models/kvlens-reasoner.gguf"; }
std::string classifier() { return test::source_dir() + "/models/kvlens-reasoner.classifier.gguf"; }

using kvlens::test::slurp;

// Start `kvlens ARGS` (output discarded); the pid is kvlens itself (the shell execs it).
pid_t spawn(const std::string & args) {
    pid_t pid = fork();
    if (pid == 0) {
        std::string cmd = "exec " + test::kvlens_bin() + " " + args + " >/dev/null 2>&1";
        execl("/bin/sh", "sh", "-c", cmd.c_str(), (char *) nullptr);
        _exit(127);
    }
    return pid;
}

// Exit status (or 128+signal) once pid ends.
int wait_for(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// A record without its wall-clock fields ("seconds": how long the item took), which no two runs share.
nlohmann::json untimed(nlohmann::json j) {
    if (j.is_object()) {
        j.erase("seconds");
        for (auto & [k, v] : j.items()) v = untimed(v);
    }
    return j;
}

std::vector<nlohmann::json> records(const std::string & text) {
    std::vector<nlohmann::json> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(untimed(nlohmann::json::parse(line, nullptr, false)));
    return out;
}

// Runs `args` (writing `out`) uninterrupted into `ref_out`, then killed at random instants at least `kills` times
// (each run resumes the last one's file), then to the end; the two files must be equal.
void kill_and_resume(const std::string & args_for, const std::string & dir, int kills, uint32_t seed) {
    const std::string ref = dir + "/ref.jsonl", out = dir + "/killed.jsonl";
    auto t0 = Clock::now();
    std::string log;
    ASSERT_EQ(test::run(test::kvlens_bin() + " " + args_for + " -o " + ref, &log), 0) << log;
    const double whole = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::string want = slurp(ref);
    ASSERT_FALSE(want.empty());

    std::mt19937 rng(seed);
    int killed = 0, runs = 0;
    // Kill points spread over the whole run: each attempt waits a random share of one uninterrupted run, so
    // the kills land in model loading, in generation and between records alike. Bounded: at most 40 starts.
    std::uniform_real_distribution<double> share(0.01, 0.15);
    while (killed < kills && runs < 40) {
        ++runs;
        pid_t pid = spawn(args_for + " -o " + out);
        const auto until = Clock::now() + std::chrono::duration<double>(share(rng) * whole);
        int status = -1;
        while (Clock::now() < until) {
            int st = 0;
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid) { status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); break; }
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        if (status < 0) {
            kill(pid, SIGKILL);
            status = wait_for(pid);
            if (status == 128 + SIGKILL) { ++killed; continue; }
        }
        ASSERT_EQ(status, 0) << "run " << runs << " failed (exit " << status << ")";
        break;  // finished before its kill: the file is complete
    }
    EXPECT_GE(killed, kills) << "only " << killed << " of " << runs << " runs were killed";
    // finish (a no-op when the last run already did)
    ASSERT_EQ(test::run(test::kvlens_bin() + " " + args_for + " -o " + out, &log), 0) << log;

    const std::string got = slurp(out);
    // Every line whole JSON, ids unique, and the file exactly the uninterrupted one.
    std::istringstream in(got);
    std::string line;
    std::set<std::string> ids;
    size_t n = 0;
    while (std::getline(in, line)) {
        ++n;
        auto j = nlohmann::json::parse(line, nullptr, false);
        ASSERT_FALSE(j.is_discarded()) << "line " << n << " is not JSON (torn?): " << line.substr(0, 120);
        if (n == 1 && j.contains("meta")) continue;  // probe prep's settings line
        ASSERT_TRUE(j.contains("id")) << line.substr(0, 120);
        EXPECT_TRUE(ids.insert(j["id"].dump()).second) << "duplicate id " << j["id"].dump();
    }
    // The same records in the same order, byte for byte but for the timings.
    const auto g = records(got), w = records(want);
    ASSERT_EQ(g.size(), w.size()) << "after " << killed << " kills: " << g.size() << " lines, uninterrupted " << w.size();
    for (size_t i = 0; i < g.size(); ++i)
        ASSERT_EQ(g[i].dump(), w[i].dump()) << "line " << i + 1 << " differs after " << killed << " kills";
    std::printf("[ kill ] %d kills in %d runs (uninterrupted run %.2f s), %zu records equal\n", killed, runs, whole, n);
}

TEST(Kill, CoeRecordsSurviveSigkill) {
    test::TempDir d;
    std::string log;
    ASSERT_EQ(test::run(test::kvlens_bin() + " arith -n 40 --seed 11 -o " + d.path + "/q.jsonl", &log), 0) << log;
    kill_and_resume("coe -m " + reasoner() + " --data " + d.path + "/q.jsonl --format arith -t 1", d.path, 6, 1);
}

TEST(Kill, ProbePrepRecordsSurviveSigkill) {
    test::TempDir d;
    kill_and_resume("probe prep -m " + reasoner() + " -t 1 --arith 40 --fast-cap 32 --slow-cap 224 --switch-aware --seq-len 32",
                    d.path, 6, 2);
}

TEST(Kill, ThinkRecordsSurviveSigkill) {
    test::TempDir d;
    kill_and_resume("think -m " + reasoner() + " --classifier " + classifier() + " --arith 40 -t 1", d.path, 6, 3);
}

}  // namespace
}  // namespace kvlens
