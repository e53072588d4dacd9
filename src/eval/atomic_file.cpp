// Whole-file writes through a temporary file and rename; every write, flush and close checked (kvlens/atomic_file.h).
#include "kvlens/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "kvlens/error.h"

namespace kvlens {
namespace {

std::string err_of(int e) { return std::strerror(e); }

std::string folder_of(const std::string & p) {
    const size_t s = p.rfind('/');
    if (s == std::string::npos) return ".";
    return s == 0 ? "/" : p.substr(0, s);
}

std::string base_of(const std::string & p) {
    const size_t s = p.rfind('/');
    return s == std::string::npos ? p : p.substr(s + 1);
}

// The file a path names: symlinks followed (a dangling or absent path is itself).
std::string resolve(const std::string & path) {
    char buf[PATH_MAX];
    struct stat st{};
    if (lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && realpath(path.c_str(), buf)) return buf;
    return path;
}

// A temporary file beside `target` ("DIR/.NAME.tmp.XXXXXX"); returns its fd and sets `tmp`, or -1 with errno.
int make_temp(const std::string & target, std::string & tmp) {
    tmp = folder_of(target) + "/." + base_of(target) + ".tmp.XXXXXX";
    return mkstemp(tmp.data());
}

// Fill, flush and close `f` (closed in every case); throws on any failure.
void fill_and_close(FILE * f, const std::function<void(FILE *)> & fill, const std::string & path, bool sync) {
    try {
        fill(f);
        errno = 0;
        if (std::fflush(f) != 0 || std::ferror(f)) throw Error("write failed: " + path + ": " + err_of(errno ? errno : EIO));
        if (sync && fsync(fileno(f)) != 0 && errno != EINVAL && errno != EROFS)
            throw Error("write failed: " + path + ": " + err_of(errno));
    } catch (...) {
        std::fclose(f);
        throw;
    }
    if (std::fclose(f) != 0) throw Error("write failed: " + path + ": " + err_of(errno));
}

}  // namespace

void write_all(FILE * f, const void * data, size_t n, const std::string & path) {
    if (n > 0 && std::fwrite(data, 1, n, f) != n) throw Error("write failed: " + path + ": " + err_of(errno ? errno : EIO));
}

void write_file_atomic(const std::string & path, const std::function<void(FILE *)> & fill) {
    if (path.empty()) throw Error("no output path given");
    const std::string target = resolve(path);
    struct stat st{};
    const bool exists = stat(target.c_str(), &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) throw Error("cannot write " + path + ": it is a directory");
    if (exists && !S_ISREG(st.st_mode)) {  // a device or fifo: written in place
        FILE * f = std::fopen(target.c_str(), "wb");
        if (!f) throw Error("cannot write " + path + ": " + err_of(errno));
        fill_and_close(f, fill, path, false);
        return;
    }
    std::string tmp;
    const int fd = make_temp(target, tmp);
    if (fd < 0) throw Error("cannot write " + path + ": " + err_of(errno));
    // mkstemp makes 0600; give the file the mode a plain fopen would (or the replaced file's)
    mode_t mode;
    if (exists) {
        mode = st.st_mode & 07777;
    } else {
        const mode_t um = umask(0);
        umask(um);
        mode = 0666 & ~um;
    }
    fchmod(fd, mode);
    FILE * f = fdopen(fd, "wb");
    if (!f) {
        const int e = errno;
        close(fd);
        unlink(tmp.c_str());
        throw Error("cannot write " + path + ": " + err_of(e));
    }
    try {
        fill_and_close(f, fill, path, true);
    } catch (...) {
        unlink(tmp.c_str());
        throw;
    }
    if (std::rename(tmp.c_str(), target.c_str()) != 0) {
        const int e = errno;
        unlink(tmp.c_str());
        throw Error("cannot write " + path + ": " + err_of(e));
    }
}

void write_text_atomic(const std::string & path, const std::string & text) {
    write_file_atomic(path, [&](FILE * f) { write_all(f, text.data(), text.size(), path); });
}

void check_writable(const std::string & path) {
    if (path == "-") return;
    if (path.empty()) throw Error("no output path given");
    const std::string target = resolve(path);
    struct stat st{};
    if (stat(target.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) throw Error("cannot write " + path + ": it is a directory");
        const int fd = open(target.c_str(), O_WRONLY | O_APPEND);  // neither truncates nor changes it
        if (fd < 0) throw Error("cannot write " + path + ": " + err_of(errno));
        close(fd);
        if (!S_ISREG(st.st_mode)) return;  // a device or fifo is written in place
    } else {
        struct stat ds{};
        const std::string dir = folder_of(target);
        if (stat(dir.c_str(), &ds) != 0) throw Error("cannot write " + path + ": folder " + dir + " does not exist");
        if (!S_ISDIR(ds.st_mode)) throw Error("cannot write " + path + ": " + dir + " is not a folder");
    }
    // the whole-file writers create a temporary file beside the target: try that once
    std::string tmp;
    const int fd = make_temp(target, tmp);
    if (fd < 0) throw Error("cannot write " + path + ": " + err_of(errno));
    close(fd);
    unlink(tmp.c_str());
}

void check_stream(FILE * f, const std::string & what) {
    errno = 0;
    if (std::fflush(f) != 0 || std::ferror(f)) throw Error("cannot write to " + what + ": " + err_of(errno ? errno : EIO));
}

}  // namespace kvlens
