/* SPDX-License-Identifier: ISC */
/*
 * render: the Prometheus text (families grouped whatever the registration
 * order, one HELP/TYPE each, label values escaped, duplicate series and
 * type clashes dropped, the instance label from the descriptor) and the
 * JSON of a status tree (lists as arrays, repeated groups merged, untitled
 * groups flattened, typed values, bytes that are not UTF-8 replaced).
 */
#include "keel-internal.h"
#include "unit.h"

#include <event2/buffer.h>
#include <keel/render.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The buffer's text, NUL-terminated, to free. */
static char *
text_of(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	assert_non_null(s);
	evbuffer_copyout(b, s, n);
	s[n] = '\0';
	return s;
}

static void
test_prometheus_families(void **state)
{
	static const struct keel_app app = { .name = "keeld", .version = "1" };
	static const struct keel_module_desc desc = { .name = "serial",
						      .label = "port" };
	struct keel k;
	struct keel_module mod;
	struct keel_instance a, b, gone;
	struct keel_metric *mt;
	struct evbuffer *out = evbuffer_new();
	char *s;

	(void)state;
	memset(&k, 0, sizeof(k));
	memset(&mod, 0, sizeof(mod));
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&gone, 0, sizeof(gone));
	k.app = &app;
	k.modules = &mod;
	mod.k = &k;
	mod.name = "serial";
	mod.desc = &desc;
	mod.state = MODULE_RUNNING;
	mod.instances = &a;
	a.next = &b;
	b.next = &gone;
	a.m = b.m = gone.m = &mod;
	a.title = "z\"q\\x\ny";
	b.title = "a";
	gone.title = "a";
	a.state = b.state = INSTANCE_RUNNING;
	gone.state = INSTANCE_REMOVING; /* shares b's title: not a series */

	/* Registered out of order: the families come out grouped. */
	keel_metric_add(metric_new(&a.metrics, KEEL_METRIC_COUNTER,
				   "rx_bytes_total", "Bytes\nread \\ in.", NULL,
				   NULL),
			5);
	keel_metric_set(metric_new(&a.metrics, KEEL_METRIC_GAUGE, "up", "Open.",
				   NULL, NULL),
			1);
	keel_metric_add(metric_new(&b.metrics, KEEL_METRIC_COUNTER,
				   "rx_bytes_total", "Bytes read.", NULL, NULL),
			7);
	metric_new(&gone.metrics, KEEL_METRIC_COUNTER, "rx_bytes_total",
		   "Bytes read.", NULL, NULL);
	mt = metric_new(&k.metrics, KEEL_METRIC_COUNTER, "reloads_total",
			"Reloads.", "result", "ok");
	keel_metric_add(mt, 2);
	metric_new(&k.metrics, KEEL_METRIC_COUNTER, "reloads_total", "Reloads.",
		   "result", "failed");
	/* The same series twice, and a clash of types: dropped. */
	metric_new(&k.metrics, KEEL_METRIC_COUNTER, "reloads_total", "Reloads.",
		   "result", "ok");
	metric_new(&k.metrics, KEEL_METRIC_GAUGE, "reloads_total", "Reloads.",
		   "result", "zzz");

	assert_int_equal(keel_render_prometheus(&mod, out), 0);
	s = text_of(out);
	assert_string_equal(
		s, "# HELP keeld_reloads_total Reloads.\n"
		   "# TYPE keeld_reloads_total counter\n"
		   "keeld_reloads_total{result=\"failed\"} 0\n"
		   "keeld_reloads_total{result=\"ok\"} 2\n"
		   "# HELP keeld_serial_rx_bytes_total Bytes read.\n"
		   "# TYPE keeld_serial_rx_bytes_total counter\n"
		   "keeld_serial_rx_bytes_total{port=\"a\"} 7\n"
		   "keeld_serial_rx_bytes_total{port=\"z\\\"q\\\\x\\ny\"} 5\n"
		   "# HELP keeld_serial_up Open.\n"
		   "# TYPE keeld_serial_up gauge\n"
		   "keeld_serial_up{port=\"z\\\"q\\\\x\\ny\"} 1\n");
	free(s);
	evbuffer_free(out);
	metric_free_all(k.metrics);
	metric_free_all(a.metrics);
	metric_free_all(b.metrics);
	metric_free_all(gone.metrics);
}

/*
 * Values as printf's %lld writes them (negative gauges, both ends of the
 * range), and text past the renderer's 4 KiB batch split nowhere.
 */
static void
test_prometheus_numbers_and_long_text(void **state)
{
	static const struct keel_app app = { .name = "keeld", .version = "1" };
	static char help[10000], want[10300];
	struct keel k;
	struct keel_module mod;
	struct evbuffer *out = evbuffer_new();
	char *s;

	(void)state;
	memset(&k, 0, sizeof(k));
	memset(&mod, 0, sizeof(mod));
	k.app = &app;
	mod.k = &k;
	memset(help, 'h', sizeof(help) - 1);
	keel_metric_set(metric_new(&k.metrics, KEEL_METRIC_GAUGE, "a_min",
				   "Min.", NULL, NULL),
			INT64_MIN);
	keel_metric_set(metric_new(&k.metrics, KEEL_METRIC_GAUGE, "b_neg",
				   "Negative.", NULL, NULL),
			-42);
	keel_metric_set(metric_new(&k.metrics, KEEL_METRIC_GAUGE, "c_max",
				   "Max.", NULL, NULL),
			INT64_MAX);
	metric_new(&k.metrics, KEEL_METRIC_GAUGE, "d_zero", help, NULL, NULL);
	assert_int_equal(keel_render_prometheus(&mod, out), 0);
	s = text_of(out);
	snprintf(want, sizeof(want),
		 "# HELP keeld_a_min Min.\n# TYPE keeld_a_min gauge\n"
		 "keeld_a_min %lld\n"
		 "# HELP keeld_b_neg Negative.\n# TYPE keeld_b_neg gauge\n"
		 "keeld_b_neg -42\n"
		 "# HELP keeld_c_max Max.\n# TYPE keeld_c_max gauge\n"
		 "keeld_c_max %lld\n"
		 "# HELP keeld_d_zero %s\n# TYPE keeld_d_zero gauge\n"
		 "keeld_d_zero 0\n",
		 (long long)INT64_MIN, (long long)INT64_MAX, help);
	assert_string_equal(s, want);
	free(s);
	evbuffer_free(out);
	metric_free_all(k.metrics);
}

static void
test_json_tree(void **state)
{
	struct keel_status *st = status_new();
	struct evbuffer *out = evbuffer_new();
	char *s;

	(void)state;
	keel_status_int(st, "pid", 42);
	keel_status_bool(st, "ready", 1);
	keel_status_double(st, "rate", 0.5);
	keel_status_str(st, "bad",
			"a\xff"
			"b");
	keel_status_push(st, "signals_total"); /* a labelled metric, twice */
	keel_status_int(st, "SIGHUP", 1);
	keel_status_pop(st);
	keel_status_push(st, "signals_total");
	keel_status_int(st, "SIGTERM", 2);
	keel_status_pop(st);
	keel_status_push(st, "http");
	keel_status_push(st, ""); /* a single section's untitled instance */
	keel_status_int(st, "open", 3);
	keel_status_pop(st);
	keel_status_pop(st);
	keel_status_push(st, "serial");
	keel_status_push(st, "gps");
	keel_status_push_list(st, "peers");
	keel_status_push(st, NULL);
	keel_status_str(st, "peer", "127.0.0.1:1");
	keel_status_pop(st);
	keel_status_push(st, NULL);
	keel_status_str(st, "peer", "127.0.0.1:2");
	keel_status_pop(st);
	keel_status_pop(st);
	keel_status_push_list(st, "none");
	keel_status_pop(st);
	keel_status_pop(st);
	keel_status_pop(st);

	assert_int_equal(status_json(st, out), 0);
	s = text_of(out);
	assert_string_equal(
		s,
		"{\"pid\":42,\"ready\":true,\"rate\":0.5,\"bad\":\"a\\uFFFDb\","
		"\"signals_total\":{\"SIGHUP\":1,\"SIGTERM\":2},"
		"\"http\":{\"open\":3},"
		"\"serial\":{\"gps\":{\"peers\":[{\"peer\":\"127.0.0.1:1\"},"
		"{\"peer\":\"127.0.0.1:2\"}],\"none\":[]}}}\n");
	free(s);
	/* The text numbers the list's items. */
	{
		size_t len;
		const char *t = status_text(st, &len);

		assert_non_null(
			strstr(t, "serial.gps.peers.1.peer: 127.0.0.1:1\n"
				  "serial.gps.peers.2.peer: 127.0.0.1:2\n"));
		assert_non_null(strstr(t, "http.open: 3\n"));
	}
	evbuffer_free(out);
	status_free(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prometheus_families),
		cmocka_unit_test(test_prometheus_numbers_and_long_text),
		cmocka_unit_test(test_json_tree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
