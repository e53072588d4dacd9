// Process CPU time, for benchmarks: with -t 1 it is robust to other jobs on a shared machine (wall time is not).
#pragma once
#include <ctime>

namespace kvlens {

inline double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

}  // namespace kvlens
