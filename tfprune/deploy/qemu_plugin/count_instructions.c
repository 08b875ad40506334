/*
 * A qemu-user TCG plugin that counts the guest instructions executed, and records the count
 * each time the guest marks a point of interest.
 *
 * Every translated block gets an inline add of its instruction count to one counter (no
 * callback per block, so the emulation stays fast). The guest marks a point with the
 * system call getpriority(PRIO_PROCESS, MARK_WHO), which fails harmlessly (no such process);
 * the plugin stores the counter at each mark. At exit it writes "total N" and one
 * "mark N" line per mark to the file given as `out=PATH` (or to qemu's log). `mark=NR`
 * gives getpriority's number on the guest (141 on aarch64, the default; 140 on x86_64).
 *
 *   gcc -shared -fPIC -O2 -o count_instructions.so count_instructions.c
 *   qemu-aarch64 -plugin ./count_instructions.so,out=counts.txt -cpu cortex-a76 ./program
 *
 * The counter is shared by all guest threads without atomics: count single-threaded work.
 */

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The part of qemu's plugin API (include/qemu/qemu-plugin.h, QEMU_PLUGIN_VERSION 1 as in
 * qemu 7.2) that this plugin uses, declared here so that building it needs no qemu headers. */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                                              uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MARK_WHO 0x7f1c0de /* the `who` argument that makes a getpriority call a mark */
#define MAX_MARKS 4096

static uint64_t executed;
static uint64_t marks[MAX_MARKS];
static size_t mark_count;
static char out_path[4096];
static int64_t mark_syscall = 141; /* getpriority on aarch64 */

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu_index; (void)a1; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num == mark_syscall && a2 == MARK_WHO && mark_count < MAX_MARKS) {
        marks[mark_count++] = executed;
    }
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    (void)id; (void)userdata;
    FILE *out = out_path[0] ? fopen(out_path, "w") : NULL;
    char line[64];
    if (out_path[0] && !out) {
        qemu_plugin_outs("count_instructions: cannot open the out= file; the counts follow here\n");
    }
    snprintf(line, sizeof line, "total %" PRIu64 "\n", executed);
    if (out) fputs(line, out); else qemu_plugin_outs(line);
    for (size_t i = 0; i < mark_count; i++) {
        snprintf(line, sizeof line, "mark %" PRIu64 "\n", marks[i]);
        if (out) fputs(line, out); else qemu_plugin_outs(line);
    }
    if (out) fclose(out);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        } else if (strncmp(argv[i], "mark=", 5) == 0) {
            mark_syscall = strtoll(argv[i] + 5, NULL, 10);
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
