/*
 * Unit tests for src/lookup/shape.c: SPEC §7's table column by column — what each primary CRM
 * answers turned into our name, profile and responsible-extension bodies (the enterprise's own
 * manager mapping winning, digits only), and the exact all-null bodies for unusable answers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "lookup/lookup.h"

/* Shapes `downstream` and checks the body equals `want` (JSON, compared member by member). */
static void shaped(enum lookup_kind kind, const char *primary, const char *downstream,
                   const char *mapping, const char *want)
{
    char *body = lookup_shape(kind, primary, downstream, strlen(downstream), mapping);
    assert_non_null(body);
    json_t *got = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
    json_t *exp = json_loads(want, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(exp);
    bool same = got && json_equal(got, exp);
    json_decref(got);
    json_decref(exp);
    static char shown[512];
    snprintf(shown, sizeof shown, "%s", body);
    free(body); /* before a failing assert, which does not return */
    if (!same)
        fail_msg("%s from %s: got %s, want %s", primary, downstream, shown, want);
}

#define NAME(p, d, w) shaped(LOOKUP_NAME, p, d, NULL, w)
#define PROFILE(p, d, w) shaped(LOOKUP_PROFILE, p, d, NULL, w)
#define EXT(p, d, m, w) shaped(LOOKUP_EXTENSION, p, d, m, w)

#define NULL_PROFILE                                                                               \
    "{\"last_name\": null, \"first_name\": null, \"middle_name\": null, \"enterprise_name\": "     \
    "null}"

static void test_null_bodies(void **state)
{
    (void)state;
    assert_string_equal(lookup_null_body(LOOKUP_NAME), "{\"name\":null}");
    assert_string_equal(lookup_null_body(LOOKUP_PROFILE),
                        "{\"last_name\":null,\"first_name\":null,\"middle_name\":null,"
                        "\"enterprise_name\":null}");
    assert_string_equal(lookup_null_body(LOOKUP_EXTENSION), "{\"extension\":null}");
}

static void test_name_retailcrm(void **state)
{
    (void)state;
    const char *p = "retailcrm";
    NAME(p,
         "{\"enterprise_name\": \"OOO Romashka\", \"last_name\": \"Ivanov\", "
         "\"first_name\": \"Ivan\"}",
         "{\"name\": \"OOO Romashka\"}");
    NAME(p,
         "{\"enterprise_name\": \"\", \"last_name\": \"Ivanov\", \"first_name\": \"Ivan\", "
         "\"middle_name\": \"Ivanovich\"}",
         "{\"name\": \"Ivanov Ivan Ivanovich\"}");
    NAME(p, "{\"last_name\": \"Ivanov\", \"first_name\": \"\", \"middle_name\": \"Ivanovich\"}",
         "{\"name\": \"Ivanov Ivanovich\"}");
    NAME(p, "{\"first_name\": \"Ivan\", \"middle_name\": null}", "{\"name\": \"Ivan\"}");
    NAME(p, "{\"enterprise_name\": null, \"last_name\": \"\", \"first_name\": \"\"}",
         "{\"name\": null}");
    NAME(p, "{}", "{\"name\": null}");
}

static void test_name_ms(void **state)
{
    (void)state;
    NAME("ms", "{\"name\": \"Petrov P.\"}", "{\"name\": \"Petrov P.\"}");
    NAME("ms", "{\"name\": \"\"}", "{\"name\": null}");
    NAME("ms", "{\"name\": null}", "{\"name\": null}");
    NAME("ms", "{\"enterprise_name\": \"OOO\"}", "{\"name\": null}"); /* ms answers `name` only */
}

static void test_name_uon(void **state)
{
    (void)state;
    NAME("uon", "{\"profile\": {\"display_name\": \"Sidorov Sidor\"}}",
         "{\"name\": \"Sidorov Sidor\"}");
    NAME("uon", "{\"profile\": {\"display_name\": \"\"}}", "{\"name\": null}");
    NAME("uon", "{\"profile\": null}", "{\"name\": null}");
    NAME("uon", "{\"name\": \"Sidorov\"}", "{\"name\": null}");
}

static void test_profile_retailcrm(void **state)
{
    (void)state;
    PROFILE("retailcrm",
            "{\"last_name\": \"Ivanov\", \"first_name\": \"Ivan\", \"middle_name\": \"Ivanovich\", "
            "\"enterprise_name\": \"OOO Romashka\", \"extra\": 1}",
            "{\"last_name\": \"Ivanov\", \"first_name\": \"Ivan\", \"middle_name\": "
            "\"Ivanovich\", \"enterprise_name\": \"OOO Romashka\"}");
    PROFILE("retailcrm",
            "{\"last_name\": \"Ivanov\", \"first_name\": \"\", \"middle_name\": null, "
            "\"enterprise_name\": \"\"}",
            "{\"last_name\": \"Ivanov\", \"first_name\": null, \"middle_name\": null, "
            "\"enterprise_name\": null}");
    PROFILE("retailcrm", "{}", NULL_PROFILE);
}

static void test_profile_ms(void **state)
{
    (void)state;
    PROFILE("ms", "{\"counterparty\": {\"name\": \"OOO Vasilek\", \"id\": \"x\"}}",
            "{\"last_name\": \"OOO Vasilek\", \"first_name\": null, \"middle_name\": null, "
            "\"enterprise_name\": \"OOO Vasilek\"}");
    PROFILE("ms", "{\"counterparty\": {\"name\": \"\"}}", NULL_PROFILE);
    PROFILE("ms", "{\"counterparty\": null}", NULL_PROFILE);
    PROFILE("ms", "{\"name\": \"OOO\"}", NULL_PROFILE);
}

static void test_profile_uon(void **state)
{
    (void)state;
    PROFILE("uon", "{\"profile\": {\"display_name\": \"Sidorov Sidor\"}}",
            "{\"last_name\": \"Sidorov\", \"first_name\": \"Sidor\", \"middle_name\": null, "
            "\"enterprise_name\": null}");
    PROFILE("uon", "{\"profile\": {\"display_name\": \"Sidorov\"}}",
            "{\"last_name\": \"Sidorov\", \"first_name\": null, \"middle_name\": null, "
            "\"enterprise_name\": null}");
    PROFILE("uon", "{\"profile\": {\"display_name\": \"\"}}", NULL_PROFILE);
    PROFILE("uon", "{}", NULL_PROFILE);
}

/* Stray spaces in display_name make neither an empty nor a space-led name. */
static void test_profile_uon_spaces(void **state)
{
    (void)state;
    PROFILE("uon", "{\"profile\": {\"display_name\": \" Sidorov  Sidor \"}}",
            "{\"last_name\": \"Sidorov\", \"first_name\": \"Sidor\", \"middle_name\": null, "
            "\"enterprise_name\": null}");
}

static void test_extension(void **state)
{
    (void)state;
    const char *primaries[] = {"retailcrm", "ms", "uon"};
    const char *map = "{\"18\": \"151\", \"mgr-7\": \"152\", \"19\": \"ext9\"}";
    for (int i = 0; i < 3; i++) {
        const char *p = primaries[i];
        EXT(p, "{\"extension\": \"150\"}", NULL, "{\"extension\": \"150\"}");
        EXT(p, "{\"extension\": \"150\", \"manager_id\": \"18\"}", NULL,
            "{\"extension\": \"150\"}"); /* no mapping: what the CRM said */
        EXT(p, "{\"extension\": \"150\", \"manager_id\": \"18\"}", map,
            "{\"extension\": \"151\"}"); /* the mapping wins */
        EXT(p, "{\"extension\": \"150\", \"manager_id\": 18}", map,
            "{\"extension\": \"151\"}"); /* a numeric manager id */
        EXT(p, "{\"extension\": null, \"manager_id\": \"mgr-7\"}", map, "{\"extension\": \"152\"}");
        EXT(p, "{\"extension\": \"150\", \"manager_id\": \"99\"}", map,
            "{\"extension\": \"150\"}"); /* not in the mapping */
        EXT(p, "{\"extension\": \"150\", \"manager_id\": \"19\"}", map,
            "{\"extension\": \"150\"}"); /* the mapping's value is not digits */
        EXT(p, "{\"extension\": \"ext12\"}", map, "{\"extension\": null}");
        EXT(p, "{\"extension\": \"\"}", map, "{\"extension\": null}");
        EXT(p, "{\"extension\": \"15 1\"}", NULL, "{\"extension\": null}");
        EXT(p, "{\"extension\": null, \"manager_id\": null}", map, "{\"extension\": null}");
        EXT(p, "{}", map, "{\"extension\": null}");
        /* an unreadable mapping is no mapping */
        EXT(p, "{\"extension\": \"150\", \"manager_id\": \"18\"}", "not json",
            "{\"extension\": \"150\"}");
    }
}

static void invalid_is_null(const char *downstream)
{
    const char *primaries[] = {"retailcrm", "ms", "uon"};
    const enum lookup_kind kinds[] = {LOOKUP_NAME, LOOKUP_PROFILE, LOOKUP_EXTENSION};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++) {
            char *body = lookup_shape(kinds[k], primaries[i], downstream, strlen(downstream),
                                      "{\"18\": \"151\"}");
            assert_non_null(body);
            assert_string_equal(body, lookup_null_body(kinds[k]));
            free(body);
        }
}

static void test_invalid_downstream(void **state)
{
    (void)state;
    invalid_is_null("");
    invalid_is_null("not json");
    invalid_is_null("{\"name\": \"Ivanov\"");
    invalid_is_null("<html>502 Bad Gateway</html>");
    invalid_is_null("[\"Ivanov\"]");
    invalid_is_null("\"Ivanov\"");
    invalid_is_null("null");
}

/* Only `len` bytes are read: the downstream body need not be NUL-terminated. */
static void test_length_respected(void **state)
{
    (void)state;
    const char *text = "{\"name\": \"Petrov\"}garbage";
    char *body = lookup_shape(LOOKUP_NAME, "ms", text, strlen(text) - strlen("garbage"), NULL);
    assert_string_equal(body, "{\"name\":\"Petrov\"}");
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_bodies),       cmocka_unit_test(test_name_retailcrm),
        cmocka_unit_test(test_name_ms),           cmocka_unit_test(test_name_uon),
        cmocka_unit_test(test_profile_retailcrm), cmocka_unit_test(test_profile_ms),
        cmocka_unit_test(test_profile_uon),       cmocka_unit_test(test_profile_uon_spaces),
        cmocka_unit_test(test_extension),         cmocka_unit_test(test_invalid_downstream),
        cmocka_unit_test(test_length_respected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
