{#- Small stand-ins for dbt_utils tests (no packages offline). -#}

{% test unique_combination(model, combination_of_columns) %}
    select {{ combination_of_columns | join(', ') }}, count(*) as n_rows
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}


{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
    select *
    from {{ model }}
    where {{ column_name }} is not null
      and (
        false
        {%- if min_value is not none %}
        or {{ column_name }} {{ '<' if inclusive else '<=' }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
        or {{ column_name }} {{ '>' if inclusive else '>=' }} {{ max_value }}
        {%- endif %}
      )
{% endtest %}


{#- Rows where a boolean SQL expression is false (nulls count as passing). -#}
{% test expression_is_true(model, expression) %}
    select *
    from {{ model }}
    where not ({{ expression }})
{% endtest %}


{#- Every row-level rule of a model in one scan: `not_null` columns and `rules`, SQL conditions
    each row must meet (a null result passes, as in accepted_range). One test per model rather
    than one per column and rule: dbt spends ~20 ms per test node, which made 70 small tests
    most of a micro-batch's dbt step (PERFORMANCE.md). A failing row comes back with the first
    rule it breaks in `broken_rule`, kept (store_failures) in `<target schema>_test_failures`,
    the table run_dbt's error names. -#}
{% test row_rules(model, not_null=[], rules=[]) %}
    {{- config(store_failures=true, schema=target.schema ~ "_test_failures") }}
    {%- set checks = [] -%}
    {%- for column in not_null -%}
        {%- do checks.append(column ~ ' is not null') -%}
    {%- endfor -%}
    {%- do checks.extend(rules) -%}
    select *
    from (
        select
            case
            {%- for check in checks %}
                when not coalesce(({{ check }}), true) then {{ dbt.string_literal(check) }}
            {%- endfor %}
            end as broken_rule,
            *
        from {{ model }}
    ) as checked
    where broken_rule is not null
{% endtest %}
