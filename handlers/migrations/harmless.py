"""The allow-lists behind failing closed: functions a migration may call and settings it may
change without a person reviewing them. Anything not listed here counts as forbidden.

A function is listed only when calling it cannot change data, files, sessions, roles,
settings or other servers, and cannot run SQL given to it as text (so query_to_xml, ts_stat,
dblink_exec, lo_import, pg_read_file, set_config, setval, pg_terminate_backend are not).
Names match only unqualified or pg_catalog-qualified calls, and only when the file does not
define a function of that name itself.
"""
from __future__ import annotations

SAFE_FUNCTIONS = frozenset({
    # text
    "lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length", "bit_length",
    "btrim", "ltrim", "rtrim", "trim", "lpad", "rpad", "substr", "substring", "left", "right", "replace",
    "translate", "reverse", "repeat", "concat", "concat_ws", "format", "position", "strpos", "split_part",
    "starts_with", "overlay", "ascii", "chr", "md5", "sha224", "sha256", "sha384", "sha512", "encode",
    "decode", "quote_ident", "quote_literal", "quote_nullable", "regexp_replace", "regexp_match",
    "regexp_matches", "regexp_like", "regexp_count", "regexp_instr", "regexp_substr", "regexp_split_to_array",
    "regexp_split_to_table", "string_to_array", "array_to_string", "string_to_table", "to_hex", "normalize",
    "unistr", "casefold",
    # numbers
    "abs", "round", "trunc", "floor", "ceil", "ceiling", "mod", "power", "pow", "sqrt", "cbrt", "sign",
    "exp", "ln", "log", "log10", "pi", "div", "gcd", "lcm", "width_bucket", "scale", "min_scale",
    "trim_scale", "greatest", "least", "factorial",
    # dates and times (reading the clock changes nothing)
    "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday", "age",
    "date_trunc", "date_part", "date_bin", "extract", "make_date", "make_time", "make_timestamp",
    "make_timestamptz", "make_interval", "to_char", "to_date", "to_timestamp", "to_number", "isfinite",
    "justify_days", "justify_hours", "justify_interval", "timezone", "date_add", "date_subtract",
    # json and arrays
    "to_json", "to_jsonb", "json_build_object", "jsonb_build_object", "json_build_array",
    "jsonb_build_array", "json_object", "jsonb_object", "jsonb_set", "jsonb_set_lax", "jsonb_insert",
    "jsonb_strip_nulls", "json_strip_nulls", "jsonb_pretty", "jsonb_typeof", "json_typeof",
    "jsonb_array_length", "json_array_length", "jsonb_array_elements", "json_array_elements",
    "jsonb_array_elements_text", "json_array_elements_text", "jsonb_each", "json_each", "jsonb_each_text",
    "json_each_text", "jsonb_object_keys", "json_object_keys", "jsonb_extract_path", "json_extract_path",
    "jsonb_extract_path_text", "json_extract_path_text", "jsonb_path_query", "jsonb_path_query_first",
    "jsonb_path_exists", "jsonb_path_match", "row_to_json", "array_to_json", "array_length", "cardinality",
    "array_fill", "array_append", "array_prepend", "array_cat", "array_remove", "array_replace",
    "array_position", "array_positions", "array_dims", "array_lower", "array_upper", "array_ndims",
    "unnest", "generate_series", "generate_subscripts",
    # aggregates and window functions
    "count", "sum", "avg", "min", "max", "bool_and", "bool_or", "every", "array_agg", "string_agg",
    "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "row_number", "rank", "dense_rank",
    "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value", "nth_value",
    "stddev", "variance", "percentile_cont", "percentile_disc", "mode",
    # identifiers, types, sizes, full text, uuids, sequences
    "gen_random_uuid", "uuidv4", "uuidv7", "random", "nextval", "currval", "lastval", "coalesce",
    "nullif", "num_nulls", "num_nonnulls", "pg_typeof", "format_type", "to_regclass", "to_regtype",
    "pg_get_serial_sequence", "pg_column_size", "pg_relation_size", "pg_total_relation_size",
    "pg_table_size", "pg_indexes_size", "pg_size_pretty", "obj_description", "col_description",
    "current_setting", "current_database", "current_schema", "version", "pg_sleep",
    "to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery",
    "setweight", "ts_rank", "ts_rank_cd", "ts_headline", "tsvector_to_array", "array_to_tsvector",
    "host", "masklen", "network", "family", "inet_merge", "int2", "int4", "int8", "float4", "float8",
    "numeric", "text", "bool", "date", "timestamp", "timestamptz", "interval", "time",
})

# Settings SET (and set_config) may change: timeouts, formatting, planning and memory for this
# session. Not listed, so forbidden: role and session_authorization (whose rights the migration
# runs with), session_replication_role (switches triggers and foreign keys off), the settings that
# change how the server reads SQL text (standard_conforming_strings, backslash_quote,
# escape_string_warning, client_encoding: refused outright, see lexing.py), and anything else.
SAFE_SETTINGS = frozenset({
    "lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout", "transaction_timeout",
    "idle_session_timeout", "search_path", "client_min_messages",
    "check_function_bodies", "xmloption", "default_tablespace",
    "default_table_access_method", "default_toast_compression", "maintenance_work_mem", "work_mem",
    "max_parallel_maintenance_workers", "max_parallel_workers_per_gather", "timezone", "time zone",
    "datestyle", "intervalstyle", "synchronous_commit", "application_name",
    "extra_float_digits", "bytea_output", "row_security", "transaction", "session characteristics",
    "transaction_isolation", "transaction_read_only", "default_transaction_isolation", "jit",
    "temp_buffers", "lc_monetary", "lc_numeric", "lc_time",
})
