{#-
    Audiences and computed traits are found in the graph, never registered by hand: every
    enabled model under models/audiences/ is an audience, every one under models/traits/ a
    computed trait, whether in this project or in one that uses it as a package. Each declares its display name in its config meta:

        {{ config(meta={'display_name': 'Order Completed Last 30days'}) }}
        {{ config(meta={'display_name': 'Cart Abandoners Last 7 Days', 'include_anonymous': true}) }}
        {{ config(meta={'display_name': 'Lifetime Revenue', 'value_type': 'number'}) }}

    Its key is snake_case(display_name), exactly as Engage derives audience keys.
-#}
{% macro engage_kind_folder(kind) -%}
    {%- if kind == 'audience' -%}
        {{ return('audiences') }}
    {%- elif kind == 'trait' -%}
        {{ return('traits') }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("engage kind must be 'audience' or 'trait', not '" ~ kind ~ "'") }}
    {%- endif -%}
{%- endmacro %}

{#-
    The model nodes of one kind, sorted by model name (only at execution time): those under
    models/audiences/ (models/traits/) of the project being built and of every package it uses,
    ctsync's own examples included unless disabled.
-#}
{% macro engage_nodes(kind) -%}
    {%- set folder = ctsync.engage_kind_folder(kind) -%}
    {%- set nodes = [] -%}
    {%- if execute -%}
        {%- for node in graph.nodes.values() -%}
            {%- if node.resource_type == 'model'
                and node.fqn | length > 2
                and node.fqn[1] == folder -%}
                {%- do nodes.append(node) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- return(nodes | sort(attribute='name')) -}}
{%- endmacro %}

{% macro engage_node_meta(node) -%}
    {%- set meta = {} -%}
    {%- do meta.update(node.get('meta') or {}) -%}
    {%- do meta.update(node.config.get('meta') or {}) -%}
    {{- return(meta) -}}
{%- endmacro %}

{#-
    One definition per model of `kind`: key, name, model_name, relation (its table),
    include_anonymous (default false) and, for traits, value_type. Raises a compiler error, naming
    the file to fix, when a display name is missing, a key is empty or a setting is invalid.
-#}
{% macro engage_definitions(kind) -%}
    {%- set definitions = [] -%}
    {%- for node in ctsync.engage_nodes(kind) -%}
        {%- set meta = ctsync.engage_node_meta(node) -%}
        {%- set where = kind ~ " model " ~ node.name ~ " (" ~ node.original_file_path ~ ")" -%}
        {%- set display_name = meta.get('display_name') -%}
        {%- if display_name is none or (display_name | string | trim) == '' -%}
            {{ exceptions.raise_compiler_error(
                where ~ " has no display name: add {{ config(meta={'display_name': 'Your "
                ~ kind ~ " name'}) }} at the top of the file."
            ) }}
        {%- endif -%}
        {%- set key = ctsync.snake_case(display_name | string) -%}
        {%- if key == '' -%}
            {{ exceptions.raise_compiler_error(
                where ~ " has an empty key: its display name '" ~ display_name
                ~ "' has no ASCII letter or digit, and the key is snake_case(display name)."
                ~ " Use a display name with Latin letters or digits."
            ) }}
        {%- endif -%}
        {%- set definition = {
            'kind': kind,
            'key': key,
            'name': display_name | string | trim,
            'model_name': node.name,
            'path': node.original_file_path,
            'relation': api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias or node.name),
        } -%}
        {%- set include_anonymous = meta.get('include_anonymous', false) -%}
        {%- if include_anonymous is not sameas true and include_anonymous is not sameas false -%}
            {{ exceptions.raise_compiler_error(
                where ~ ": meta include_anonymous must be true or false, not '" ~ include_anonymous ~ "'"
            ) }}
        {%- endif -%}
        {%- do definition.update({'include_anonymous': include_anonymous}) -%}
        {%- if kind == 'trait' -%}
            {%- set value_type = meta.get('value_type') -%}
            {%- if value_type not in ('number', 'string', 'boolean', 'timestamp') -%}
                {{ exceptions.raise_compiler_error(
                    where ~ ": meta value_type must be one of number, string, boolean, timestamp"
                    ~ " (the type of its `value` column), not '" ~ value_type ~ "'"
                ) }}
            {%- endif -%}
            {%- do definition.update({'value_type': value_type}) -%}
        {%- endif -%}
        {%- do definitions.append(definition) -%}
    {%- endfor -%}
    {{- return(definitions) -}}
{%- endmacro %}

{#-
    Audiences and traits share one namespace on the destination profile (both become traits
    of the user), so every key must be unique across both folders. Raises a compiler error
    listing the clashing files; returns all definitions otherwise.
-#}
{% macro validate_engage_definitions() -%}
    {%- set definitions = ctsync.engage_definitions('audience') + ctsync.engage_definitions('trait') -%}
    {%- set by_key = {} -%}
    {%- for definition in definitions -%}
        {%- do by_key.setdefault(definition.key, []).append(definition) -%}
    {%- endfor -%}
    {%- set clashes = [] -%}
    {%- for key, sharing in by_key.items() | sort if sharing | length > 1 -%}
        {%- set files = [] -%}
        {%- for definition in sharing -%}
            {%- do files.append(definition.kind ~ " '" ~ definition.name ~ "' in " ~ definition.path) -%}
        {%- endfor -%}
        {%- do clashes.append("key '" ~ key ~ "' is shared by " ~ (files | join(', '))) -%}
    {%- endfor -%}
    {%- if clashes -%}
        {{ exceptions.raise_compiler_error(
            "duplicate audience/trait key: " ~ (clashes | join('; '))
            ~ ". Keys are snake_case(display name) and must be unique: rename one display name."
        ) }}
    {%- endif -%}
    {{- return(definitions) -}}
{%- endmacro %}

{#- The definition of the model being run (for its publishing hook). -#}
{% macro engage_definition_of(kind, model_name) -%}
    {%- for definition in ctsync.validate_engage_definitions() if definition.kind == kind and definition.model_name == model_name -%}
        {{- return(definition) -}}
    {%- endfor -%}
    {{- return(none) -}}
{%- endmacro %}
