/* report.c — one scenario run's result: a JSON line for machines, a table for people.
 *
 * The JSON line goes to stdout and is the only thing on stdout, so `roomcast-bench ... >>
 * results.jsonl` collects runs for bench/run.sh. Numbers derived from other numbers (rates,
 * CPU per delivery) are computed here once, so the harness and the table cannot disagree.
 */
#include "bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void rb_result_init(struct rb_result *r, const char *scenario, const char *server, int pid)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->scenario, sizeof(r->scenario), "%s", scenario);
    snprintf(r->server, sizeof(r->server), "%s", server ? server : "server");
    r->server_pid = pid;
    rb_hist_init(&r->lat);
    rb_hist_init(&r->lat_cross);
}

static struct rb_extra *extra_slot(struct rb_result *r, const char *key)
{
    for (int i = 0; i < r->nextra; i++)
        if (strcmp(r->extra[i].key, key) == 0)
            return &r->extra[i];
    if (r->nextra == RB_MAX_EXTRA)
        return NULL;
    struct rb_extra *x = &r->extra[r->nextra++];
    snprintf(x->key, sizeof(x->key), "%s", key);
    return x;
}

void rb_result_num(struct rb_result *r, const char *key, double v)
{
    struct rb_extra *x = extra_slot(r, key);
    if (x) {
        x->is_str = false;
        x->num = v;
    }
}

void rb_result_str(struct rb_result *r, const char *key, const char *v)
{
    struct rb_extra *x = extra_slot(r, key);
    if (x) {
        x->is_str = true;
        snprintf(x->str, sizeof(x->str), "%s", v);
    }
}

void rb_result_fail(struct rb_result *r, const char *fmt, ...)
{
    if (r->failed)
        return; /* the first failure is the interesting one */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->failure, sizeof(r->failure), fmt, ap);
    va_end(ap);
    r->failed = true;
}

static double bench_cpu0;
static uint64_t wall0;

/* The server's sample: its one process, or the sum over its nodes (CPU, time on CPU, memory);
 * not ok unless every node could be read. */
static void sample_server(const struct rb_result *r, struct rb_proc_sample *out)
{
    if (r->nserver_pids <= 1) {
        rb_proc_sample(r->server_pid, out);
        return;
    }
    memset(out, 0, sizeof(*out));
    out->ok = true;
    for (int i = 0; i < r->nserver_pids; i++) {
        struct rb_proc_sample one;
        rb_proc_sample(r->server_pids[i], &one);
        out->ok &= one.ok;
        out->cpu_s += one.cpu_s;
        out->run_s = out->run_s < 0 || one.run_s < 0 ? -1 : out->run_s + one.run_s;
        out->rss_kb += one.rss_kb;
        out->hwm_kb += one.hwm_kb;
    }
}

void rb_result_begin(struct rb_result *r)
{
    sample_server(r, &r->srv0);
    rb_proc_sample(r->redis_pid, &r->redis0);
    bench_cpu0 = rb_self_cpu_s();
    wall0 = rb_now_ns();
}

void rb_result_end(struct rb_result *r)
{
    r->wall_s = (double)(rb_now_ns() - wall0) / 1e9;
    r->bench_cpu_s = rb_self_cpu_s() - bench_cpu0;
    sample_server(r, &r->srv1);
    rb_proc_sample(r->redis_pid, &r->redis1);
}

bool rb_result_ok(const struct rb_result *r)
{
    return !r->failed && r->order_violations == 0 && r->losses == 0 && r->duplicates == 0 &&
           r->errors == 0;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void json_num(const char *key, double v)
{
    printf(",\"%s\":", key);
    if (!isfinite(v))
        printf("null");
    else if (v == floor(v) && fabs(v) < 1e15)
        printf("%.0f", v);
    else
        printf("%.6g", v);
}

/* Thousands separators make 7-digit rates readable at a glance. */
static const char *grp(double v, char *buf, size_t n)
{
    char t[48];
    snprintf(t, sizeof(t), "%.0f", v);
    size_t l = strlen(t), o = 0;
    for (size_t i = 0; i < l && o + 2 < n; i++) {
        buf[o++] = t[i];
        size_t rest = l - i - 1;
        if (rest && rest % 3 == 0 && t[i] != '-')
            buf[o++] = ',';
    }
    buf[o] = 0;
    return buf;
}

void rb_result_print(const struct rb_result *r, bool quiet)
{
    bool srv = r->srv0.ok && r->srv1.ok;
    double cpu = srv ? r->srv1.cpu_s - r->srv0.cpu_s : NAN;
    double rate = r->wall_s > 0 ? (double)r->deliveries / r->wall_s : 0;
    double ns_per = srv && r->deliveries ? cpu * 1e9 / (double)r->deliveries : NAN;
    double per_cpu = srv && cpu > 0 ? (double)r->deliveries / cpu : NAN;
    bool sched = srv && r->srv0.run_s >= 0 && r->srv1.run_s >= 0;
    double run = sched ? r->srv1.run_s - r->srv0.run_s : NAN;
    double us = 1e3;
    bool ok = rb_result_ok(r);

    printf("{\"scenario\":");
    json_str(r->scenario);
    printf(",\"server\":");
    json_str(r->server);
    printf(",\"ok\":%s", ok ? "true" : "false");
    if (r->failed) {
        printf(",\"failure\":");
        json_str(r->failure);
    }
    json_num("wall_s", r->wall_s);
    json_num("published", (double)r->published);
    json_num("deliveries", (double)r->deliveries);
    json_num("deliveries_per_s", rate);
    json_num("server_cpu_s", cpu);
    json_num("server_cpu_ns_per_delivery", ns_per);
    json_num("deliveries_per_server_cpu_s", per_cpu);
    json_num("server_cpu_pct", srv && r->wall_s > 0 ? 100 * cpu / r->wall_s : NAN);
    /* The same from the scheduler's ns account (proc.c): exact where ticks are coarse. */
    json_num("server_run_s", run);
    json_num("server_run_ns_per_delivery", sched && r->deliveries ? run * 1e9 / (double)r->deliveries : NAN);
    json_num("server_rss_kb", srv ? (double)r->srv1.rss_kb : NAN);
    json_num("server_hwm_kb", srv ? (double)r->srv1.hwm_kb : NAN);
    json_num("bench_cpu_s", r->bench_cpu_s);
    json_num("bench_cpu_pct", r->wall_s > 0 ? 100 * r->bench_cpu_s / r->wall_s : 0);
    json_num("lat_n", (double)r->lat.n);
    json_num("lat_p50_us", (double)rb_hist_quantile(&r->lat, 0.50) / us);
    json_num("lat_p90_us", (double)rb_hist_quantile(&r->lat, 0.90) / us);
    json_num("lat_p99_us", (double)rb_hist_quantile(&r->lat, 0.99) / us);
    json_num("lat_p999_us", (double)rb_hist_quantile(&r->lat, 0.999) / us);
    json_num("lat_max_us", (double)r->lat.max / us);
    if (r->nserver_pids > 1)
        json_num("nodes", r->nserver_pids);
    if (r->lat_cross.n) {
        /* Deliveries whose sender was connected to another node: the cluster's own latency. */
        json_num("cross_n", (double)r->lat_cross.n);
        json_num("cross_p50_us", (double)rb_hist_quantile(&r->lat_cross, 0.50) / us);
        json_num("cross_p99_us", (double)rb_hist_quantile(&r->lat_cross, 0.99) / us);
        json_num("cross_max_us", (double)r->lat_cross.max / us);
    }
    bool red = r->redis0.ok && r->redis1.ok;
    if (r->redis_pid > 0) {
        /* redis-server apart from the nodes: per delivery, and per published message (what
         * one PUBLISH of the same payload costs it is the yardstick, bench/cluster.sh). */
        double rc = red ? r->redis1.cpu_s - r->redis0.cpu_s : NAN;
        bool rs = red && r->redis0.run_s >= 0 && r->redis1.run_s >= 0;
        double rr = rs ? r->redis1.run_s - r->redis0.run_s : NAN;
        json_num("redis_cpu_s", rc);
        json_num("redis_run_s", rr);
        json_num("redis_cpu_pct", red && r->wall_s > 0 ? 100 * rc / r->wall_s : NAN);
        json_num("redis_run_ns_per_delivery", r->deliveries ? rr * 1e9 / (double)r->deliveries : NAN);
        json_num("redis_run_ns_per_publish", r->published ? rr * 1e9 / (double)r->published : NAN);
        json_num("redis_cpu_ns_per_publish", r->published ? rc * 1e9 / (double)r->published : NAN);
    }
    json_num("order_violations", (double)r->order_violations);
    json_num("losses", (double)r->losses);
    json_num("duplicates", (double)r->duplicates);
    json_num("errors", (double)r->errors);
    for (int i = 0; i < r->nextra; i++) {
        if (r->extra[i].is_str) {
            printf(",\"%s\":", r->extra[i].key);
            json_str(r->extra[i].str);
        } else {
            json_num(r->extra[i].key, r->extra[i].num);
        }
    }
    printf("}\n");
    fflush(stdout);
    if (quiet)
        return;

    char a[48], b[48], c[48];
    FILE *o = stderr;
    fprintf(o, "\n%s @ %s  [%s]%s%s\n", r->scenario, r->server, ok ? "ok" : "FAILED",
            r->failed ? ": " : "", r->failed ? r->failure : "");
    fprintf(o, "  %-20s", "parameters");
    for (int i = 0; i < r->nextra; i++) {
        if (r->extra[i].is_str)
            fprintf(o, " %s=%s", r->extra[i].key, r->extra[i].str);
        else
            fprintf(o, " %s=%.4g", r->extra[i].key, r->extra[i].num);
    }
    fprintf(o, "\n");
    fprintf(o, "  %-20s %s published, %s delivered in %.3f s = %s deliveries/s\n", "traffic",
            grp((double)r->published, a, sizeof(a)), grp((double)r->deliveries, b, sizeof(b)),
            r->wall_s, grp(rate, c, sizeof(c)));
    if (srv) {
        fprintf(o, "  %-20s %.3f s (%.0f%% of a core) = %.0f ns per delivery = %s deliveries per "
                   "CPU-s\n",
                "server CPU", cpu, r->wall_s > 0 ? 100 * cpu / r->wall_s : 0, ns_per,
                grp(per_cpu, a, sizeof(a)));
        fprintf(o, "  %-20s %s KiB now, %s KiB peak\n", "server RSS",
                grp((double)r->srv1.rss_kb, a, sizeof(a)), grp((double)r->srv1.hwm_kb, b, sizeof(b)));
    } else {
        fprintf(o, "  %-20s unknown (no --server-pid)\n", "server CPU");
    }
    if (r->redis_pid > 0 && r->redis0.ok && r->redis1.ok && r->redis1.run_s >= 0 &&
        r->redis0.run_s >= 0) {
        double rr = r->redis1.run_s - r->redis0.run_s;
        fprintf(o, "  %-20s %.3f s (%.0f%% of a core) = %.0f ns per delivery, %.0f ns per "
                   "published message\n", "redis-server CPU", rr,
                r->wall_s > 0 ? 100 * rr / r->wall_s : 0,
                r->deliveries ? rr * 1e9 / (double)r->deliveries : 0,
                r->published ? rr * 1e9 / (double)r->published : 0);
    }
    if (r->lat_cross.n)
        fprintf(o, "  %-20s p50 %.0f  p99 %.0f  max %.0f  (%s samples)\n", "cross-node lat us",
                (double)rb_hist_quantile(&r->lat_cross, 0.5) / us,
                (double)rb_hist_quantile(&r->lat_cross, 0.99) / us,
                (double)r->lat_cross.max / us, grp((double)r->lat_cross.n, a, sizeof(a)));
    fprintf(o, "  %-20s %.3f s (%.0f%% of a core)\n", "generator CPU", r->bench_cpu_s,
            r->wall_s > 0 ? 100 * r->bench_cpu_s / r->wall_s : 0);
    if (r->lat.n)
        fprintf(o, "  %-20s p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  (%s samples)\n",
                "latency us", (double)rb_hist_quantile(&r->lat, 0.5) / us,
                (double)rb_hist_quantile(&r->lat, 0.9) / us,
                (double)rb_hist_quantile(&r->lat, 0.99) / us,
                (double)rb_hist_quantile(&r->lat, 0.999) / us, (double)r->lat.max / us,
                grp((double)r->lat.n, a, sizeof(a)));
    fprintf(o, "  %-20s order violations %llu, losses %llu, duplicates %llu, errors %llu\n",
            "correctness", (unsigned long long)r->order_violations,
            (unsigned long long)r->losses, (unsigned long long)r->duplicates,
            (unsigned long long)r->errors);
}
