{#- Everything is built into the target schema (TELEMETRY_DBT_SCHEMA); a custom `schema`
    config is used as-is instead of being prefixed with the target schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{- (custom_schema_name or target.schema) | trim -}}
{%- endmacro %}
