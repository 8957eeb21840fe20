{#- Which rows a KPI mart's tests read.

    The marts' tests (dbt_project.yml: data_tests marts +where: "__latest_build__") check the
    rows the latest build of the model wrote: every row one run writes carries that run's
    now() as built_at, so they are the rows with the model's max(built_at). A full build (or
    the first) writes every row, so it tests every row; an incremental run tests the windows
    it rebuilt, and older windows were tested by the run that built them. Testing the whole
    mart on every micro-batch would cost more with each day of history (PERFORMANCE.md).

    --vars '{test_all_rows: true}' tests every row. Any other `where` works as in dbt.
    The unique key needs no scan: each incremental mart has a unique index on it. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == '__latest_build__' -%}
        {%- if var('test_all_rows', false) -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }}
             where built_at >= (select max(built_at) from {{ relation }})) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- elif where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}


{#- An index on built_at, so a test finds the latest build's rows without a scan. A post-hook
    rather than `indexes`: dbt creates `indexes` only with the table, and marts built before
    this index existed get it on their next run. -#}
{% macro built_at_index() -%}
    create index if not exists {{ this.identifier }}__built_at on {{ this }} (built_at)
{%- endmacro %}
