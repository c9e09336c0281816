/* test-list.h - every test, once.  X(name, UNIT|DB): DB tests get their own
 * database in the run's private cluster. */
#ifndef EMBSTORE_TEST_LIST_H
#define EMBSTORE_TEST_LIST_H

#define TEST_LIST(X)                                                         \
  /* unit: codecs, parsing, validation */                                    \
  X(status_names_and_messages_cover_every_code, UNIT)                        \
  X(utf8_accepts_valid_and_rejects_overlong_surrogates_and_truncation, UNIT) \
  X(vector_binary_and_text_codecs_round_trip, UNIT)                          \
  X(blake2b_matches_rfc7693_test_vector, UNIT)                               \
  X(content_hash_ignores_json_whitespace_but_sees_every_field, UNIT)         \
  X(doc_parser_reads_every_field_of_the_ingest_format, UNIT)                 \
  X(doc_parser_rejects_bad_json_with_the_field_named, UNIT)                  \
  X(doc_defaults_fill_source_and_workspace_only_where_missing, UNIT)         \
  X(validation_names_the_field_at_fault, UNIT)                               \
  X(conninfo_redaction_hides_passwords, UNIT)                                \
  X(json_string_escaping_round_trips, UNIT)                                  \
  X(json_numbers_convert_to_the_same_float_as_strtof, UNIT)                  \
  X(json_numbers_of_any_length_round_exactly, UNIT)                          \
  X(json_float_table_holds_the_truncated_128_bit_powers_of_ten, UNIT)        \
  X(index_build_plan_sizes_memory_from_the_vectors_within_the_cap, UNIT)     \
  X(fuzz_doc_json_corpus_and_regressions_replay_cleanly, UNIT)               \
  X(fuzz_vector_corpus_and_regressions_replay_cleanly, UNIT)                 \
  X(fuzz_redact_corpus_and_regressions_replay_cleanly, UNIT)                 \
  /* packaging: the version, the install, another project's build */       \
  X(version_macros_es_version_and_the_tool_agree_with_the_project_version, UNIT) \
  /* the HNSW index build: memory, workers, notice, phases */              \
  X(a_deferred_load_builds_its_index_with_the_memory_and_workers_it_reports, DB) \
  X(index_memory_outside_its_bounds_is_refused_at_open, DB)                  \
  X(a_large_load_tells_its_phases_in_order_and_the_build_progress_while_it_runs, DB) \
  X(cli_ingest_reports_the_index_build_and_says_when_the_graph_did_not_fit, DB) \
  X(cli_progress_line_on_a_terminal_names_loading_building_index_and_analysing, DB) \
  X(install_gives_a_shared_library_of_es_symbols_a_pc_file_and_the_tool, DB) \
  X(embstore_builds_inside_another_cmake_project_without_jansson_or_its_flags, DB) \
  /* allocation failures (oom.c): ES_ENOMEM or success, no crash, no leak */ \
  X(allocation_failures_in_document_parsing_return_enomem_and_leak_nothing, UNIT) \
  X(allocation_failures_in_cluster_open_return_enomem_and_leak_nothing, UNIT) \
  X(allocation_failures_in_open_without_a_server_return_enomem_and_leak_nothing, UNIT) \
  /* schema: create, adopt, migrate */                                       \
  X(init_creates_tables_indexes_and_a_valid_cascading_key, DB)               \
  X(init_twice_changes_nothing, DB)                                          \
  X(init_refuses_another_dimension_or_metric, DB)                            \
  X(init_adopts_a_legacy_database_with_orphans_without_losing_a_row, DB)     \
  X(init_refuses_to_adopt_vectors_of_another_dimension_and_changes_nothing, DB) \
  X(migrations_are_listed_and_recorded, DB)                                  \
  X(init_rebuilds_a_missing_or_invalid_index, DB)                            \
  X(a_new_migration_file_is_embedded_and_one_out_of_sequence_fails_the_build, UNIT) \
  X(migrations_are_the_sql_files_in_order_named_by_their_first_line, DB)    \
  X(migrate_restores_a_dropped_chunks_key_from_its_migration_file, DB)      \
  X(a_store_whose_meta_holds_an_unknown_metric_is_refused_by_every_reader, DB) \
  X(init_refuses_tables_it_cannot_adopt_naming_the_column_and_changes_nothing, DB) \
  X(concurrent_inits_of_a_fresh_database_all_succeed_and_create_it_once, DB) \
  X(init_and_migrate_wait_for_a_lock_no_longer_than_the_timeout_and_name_the_holder, DB) \
  X(open_reports_unreachable_servers_without_the_password, UNIT)             \
  X(two_thousand_stores_open_at_once_keep_each_its_own_error, UNIT)          \
  X(a_thread_that_outlives_its_store_leaks_nothing_and_sees_no_stale_error, UNIT) \
  X(vector_parse_json_reads_like_the_ingest_format_and_names_the_element, UNIT) \
  X(cli_search_names_the_bad_element_of_vector_once, UNIT)                   \
  X(the_tool_and_the_benchmarks_use_only_the_public_header, UNIT)            \
  X(failed_calls_hand_out_no_result_and_every_free_takes_null, UNIT)         \
  X(options_init_functions_fill_every_field_with_its_default, UNIT)          \
  X(operations_on_an_uninitialised_database_say_to_run_init, DB)             \
  /* upsert and search */                                                    \
  X(upsert_reports_inserted_updated_unchanged_and_keeps_updated_at, DB)      \
  X(upsert_with_chunks_replaces_the_chunk_set_and_without_keeps_it, DB)      \
  X(upsert_refuses_a_chunk_owned_by_another_document_and_writes_nothing, DB) \
  X(upsert_refuses_invalid_documents_before_writing, DB)                     \
  X(search_returns_nearest_first_and_like_excludes_the_document, DB)         \
  X(a_search_the_index_cannot_answer_in_full_is_answered_exactly, DB)        \
  X(filtered_search_returns_k_rows_when_k_match, DB)                         \
  X(hnsw_recall_at_10_is_at_least_0_95_on_bge_m3_cosine, DB)                 \
  X(hnsw_recall_at_10_is_at_least_0_95_on_sift_l2, DB)                       \
  /* batch upsert */                                                        \
  X(batch_counts_inserted_updated_unchanged_exactly_on_every_path, DB)       \
  X(batch_reports_invalid_documents_by_position_and_lands_the_rest, DB)      \
  X(batch_isolates_documents_the_database_rejects_and_lands_the_others, DB)  \
  X(batch_folds_duplicate_ids_last_one_wins, DB)                             \
  X(batch_replaces_chunk_sets_and_refuses_chunks_of_other_documents, DB)     \
  X(batch_progress_and_metrics_are_reported_per_batch, DB)                   \
  X(batch_analyzes_both_tables_after_a_large_load_only, DB)                  \
  X(batch_defers_the_hnsw_index_and_builds_it_at_the_end, DB)                \
  /* hostile input: every bad line named, every valid line lands */       \
  X(ingest_reports_invalid_utf8_per_line_and_lands_the_rest, DB)            \
  X(ingest_reports_invalid_utf8_in_metadata_naming_the_field_and_lands_the_rest, DB) \
  X(ingest_reports_metadata_numbers_out_of_jsonb_range_naming_the_field, DB) \
  X(ingest_reports_raw_and_escaped_nul_bytes_per_line_and_lands_the_rest, DB) \
  X(ingest_reports_nul_in_metadata_naming_the_field_and_lands_the_rest, DB) \
  X(ingest_refuses_513_byte_ids_and_lands_512_byte_ids_for_documents_and_chunks, DB) \
  X(ingest_refuses_nan_and_infinite_vector_values_naming_the_element, DB)   \
  X(a_cosine_store_refuses_zero_vectors_naming_the_line_and_field, DB)     \
  X(ingest_describes_minus_infinity_as_not_finite_like_infinity, DB)        \
  X(ingest_refuses_vectors_of_the_wrong_dimension_for_documents_and_chunks, DB) \
  X(ingest_reports_a_100_mb_line_as_too_long_and_lands_its_neighbours_in_bounded_memory, DB) \
  X(ingest_max_line_bytes_accepts_exactly_the_limit_and_reports_one_byte_more, DB) \
  X(ingest_refuses_metadata_nested_deeper_than_64_levels_and_lands_60, DB)  \
  X(ingest_refuses_metadata_that_is_not_an_object_and_takes_null_as_empty, DB) \
  X(ingest_stores_sql_metacharacters_verbatim_in_every_string_field, DB)    \
  X(hostile_source_and_workspace_values_work_in_stats_search_and_delete, DB) \
  X(ingest_refuses_invalid_utf8_in_source_and_workspace_options_naming_them, DB) \
  X(ingest_of_empty_or_blank_input_exits_0_and_writes_nothing, DB)          \
  X(ingest_reads_crlf_lines_and_a_last_line_without_newline, DB)            \
  X(ingest_refuses_duplicate_keys_unknown_fields_and_trailing_garbage_naming_them, DB) \
  X(ingest_json_output_stays_valid_utf8_when_a_message_cuts_a_long_name, DB) \
  X(ingest_lands_the_earlier_line_of_an_id_when_its_later_duplicate_fails, DB) \
  X(ingest_exits_2_and_reports_every_line_when_no_line_is_valid, DB)        \
  X(batch_upsert_refuses_hostile_documents_by_position_and_lands_the_rest, DB) \
  X(batch_upsert_refuses_invalid_utf8_and_nul_in_metadata_before_sending, DB) \
  /* manage: delete, stats, cleanup, metrics, cache */                      \
  X(delete_cascade_removes_a_source_and_its_chunks_with_exact_counts, DB)    \
  X(delete_restrict_leaves_everything_when_chunks_exist, DB)                 \
  X(delete_is_limited_to_a_workspace_and_a_dry_run_changes_nothing, DB)      \
  X(get_document_returns_fields_and_chunks_in_order_and_vectors_only_when_asked, DB) \
  X(get_document_outside_its_workspaces_is_not_found_like_a_missing_id, DB)  \
  X(delete_documents_counts_deleted_chunks_not_found_and_duplicates_exactly, DB) \
  X(delete_documents_restrict_refuses_when_chunks_exist_and_deletes_nothing, DB) \
  X(delete_documents_dry_run_counts_exactly_and_changes_nothing, DB)         \
  X(delete_documents_in_a_workspace_scope_counts_other_workspaces_as_not_found, DB) \
  X(delete_documents_invalidates_cached_searches_that_showed_them, DB)       \
  X(delete_documents_takes_ten_thousand_ids_in_one_call, DB)                 \
  X(cli_get_prints_a_document_escaped_and_as_json_and_names_a_missing_id, DB) \
  /* metadata filters and listing */                                       \
  X(filtered_search_returns_k_matches_in_every_form_of_the_filter, DB)      \
  X(a_filter_that_is_not_one_json_object_is_refused_naming_the_byte, DB)    \
  X(delete_by_filter_counts_exactly_restricts_and_a_dry_run_changes_nothing, DB) \
  X(listing_by_pages_visits_every_document_once_while_documents_are_inserted, DB) \
  X(cli_list_pages_with_after_and_deletes_by_filter_as_the_library_counts, DB)    \
  /* export, and the metadata form that makes it exact */                 \
  X(metadata_in_jsonb_form_is_what_postgresql_prints_for_every_spelling, DB) \
  X(content_hashes_agree_for_metadata_jsonb_cannot_tell_apart, UNIT)         \
  X(export_then_ingest_into_a_fresh_store_writes_the_same_content, DB)       \
  /* full-text and hybrid search */                                       \
  X(text_search_ranks_as_postgresql_does_with_web_search_syntax, DB)         \
  X(hybrid_search_fuses_the_ranks_as_reciprocal_rank_fusion_computed_apart, DB) \
  X(hybrid_search_on_one_connection_or_two_gives_the_same_answer, DB)       \
  X(the_text_search_configuration_is_chosen_at_init_and_kept, DB)            \
  X(an_interrupted_text_index_build_is_replaced_by_the_next_migrate, DB)     \
  X(the_text_index_of_an_existing_store_builds_while_writes_go_on, DB)      \
  X(a_text_longer_than_a_tsvector_holds_is_indexed_by_its_first_characters, DB) \
  /* chunk-level search */                                                 \
  X(chunk_search_returns_the_nearest_chunks_filtered_through_their_documents, DB) \
  X(chunk_search_without_the_chunk_index_says_how_to_add_it, DB)            \
  X(chunk_text_and_hybrid_search_rank_chunks_through_their_documents, DB)   \
  X(cli_delete_by_id_reports_counts_and_names_ids_not_found, DB)            \
  X(allocation_failures_in_get_and_delete_by_id_return_enomem_and_change_nothing, DB) \
  X(stats_counts_stay_exact_through_every_kind_of_write, DB)                 \
  X(stats_of_an_adopted_store_count_what_was_there, DB)                      \
  X(stats_health_is_decided_from_facts, DB)                                  \
  X(cleanup_removes_more_orphans_than_one_batch_and_validates_the_key, DB)   \
  X(cleanup_leaves_documents_younger_than_the_grace_period, DB)              \
  X(search_cache_hits_and_is_invalidated_by_writes_to_its_sources, DB)       \
  X(metrics_report_percentiles_and_errors_per_operation, DB)                 \
  X(metrics_percentiles_and_error_rate_of_known_durations_are_exact, DB)   \
  /* allocation failures with a server: ES_ENOMEM or success, never half */ \
  X(allocation_failures_in_upsert_and_batch_upsert_return_enomem_and_write_whole_documents, DB) \
  X(allocation_failures_in_search_return_enomem_and_never_a_wrong_hit, DB) \
  X(allocation_failures_in_open_init_and_migrate_return_enomem_and_leave_a_whole_store, DB) \
  X(allocation_failures_in_stats_metrics_delete_cleanup_and_count_checks_return_enomem, DB) \
  /* faults, concurrency, secrets */                                        \
  X(ingest_survives_a_killed_server_whole_batches_only_and_a_rerun_converges, DB) \
  X(cli_recovers_an_embedded_cluster_killed_with_sigkill, DB)                \
  X(delete_cut_off_by_a_dropped_connection_changes_nothing, DB)              \
  X(delete_retries_after_a_dropped_connection_and_counts_exactly, DB)        \
  X(cleanup_cut_off_by_a_dropped_connection_keeps_finished_batches, DB)      \
  X(a_held_lock_gives_a_clear_timeout_error_within_the_configured_time, DB)  \
  X(concurrent_ingests_deletes_and_cleanups_keep_the_store_exact, DB)        \
  X(one_store_handle_serves_many_threads_at_once, DB)                        \
  X(no_password_appears_in_errors_or_metrics, DB)                            \
  /* read replicas: a real hot standby made by pg_basebackup */            \
  X(reads_land_on_the_replica_and_writes_on_the_primary, DB)                \
  X(a_handle_reads_its_own_writes_at_once_while_the_replica_is_held_back, DB) \
  X(a_replica_held_behind_is_not_used_past_the_lag_bound, DB)               \
  X(reads_fall_back_to_the_primary_while_the_replica_is_down_and_return, DB) \
  X(a_cached_search_never_keeps_what_the_replica_had_not_replayed, DB)      \
  X(a_read_server_that_is_not_a_standby_of_the_store_is_never_used, DB)    \
  X(cli_reads_from_the_replica_named_by_read_db_or_embstore_read_db, DB)    \
  X(a_shared_handle_with_a_listener_and_a_replica_is_race_free, DB)         \
  /* Citus: a coordinator and two workers (skipped without citus) */       \
  X(every_command_on_a_distributed_store_answers_as_on_postgresql, DB)      \
  X(concurrent_loads_of_the_same_documents_on_a_distributed_store_stay_exact, DB) \
  X(a_worker_stopped_mid_session_leaves_nothing_half_written_and_a_rerun_converges, DB) \
  X(a_large_load_on_a_distributed_store_builds_its_index_after_and_analyses_the_shards, DB) \
  /* integrity: accounting, indexes after a killed load, counters, hashes */ \
  X(ingest_lands_every_line_when_the_hnsw_index_cannot_be_dropped, DB)     \
  X(batch_lands_its_first_batch_when_the_session_lost_its_connection, DB)  \
  X(a_killed_deferred_load_leaves_an_index_that_the_next_ingest_or_migrate_builds, DB) \
  X(counts_stay_exact_when_a_chunk_is_written_while_its_document_moves, DB) \
  X(a_document_another_writer_stores_as_it_is_here_meanwhile_is_unchanged_not_updated, DB) \
  X(writes_under_replica_role_are_counted_and_their_orphans_found_and_cleaned, DB) \
  X(stats_detect_bypassed_triggers_and_verify_and_repair_recount, DB)      \
  X(reingest_repairs_every_plain_sql_edit_of_a_document_or_its_chunks, DB) \
  X(operations_after_the_server_closed_idle_connections_retry_on_fresh_ones, DB) \
  X(the_index_build_and_analyze_after_a_load_wait_for_locks_no_longer_than_the_timeout, DB) \
  /* settings: time zones, date styles, encodings, locales */              \
  X(cleanup_keeps_new_documents_whatever_the_time_zone_and_date_style, DB) \
  X(search_distances_are_exact_whatever_extra_float_digits_says, DB)       \
  X(no_client_encoding_setting_can_corrupt_stored_text, DB)                \
  X(init_refuses_a_database_that_does_not_store_utf8, DB)                  \
  X(numbers_read_and_write_the_same_under_a_decimal_comma_locale, DB)      \
  /* secrets: never in a message, the metrics or the tool's output */        \
  X(redaction_masks_password_and_sslpassword_in_key_value_text, UNIT)        \
  X(redaction_masks_the_user_info_of_uris_malformed_ones_included, UNIT)     \
  X(redaction_cuts_to_its_buffer_and_reports_the_whole_length, UNIT)         \
  X(conninfo_redaction_masks_every_secret_option_libpq_knows, UNIT)          \
  X(scrub_quoted_hides_quoted_tokens_and_stays_inside_its_buffer, UNIT)      \
  X(every_recorded_failure_message_is_redacted, UNIT)                       \
  X(open_refuses_malformed_connection_strings_without_showing_the_password, UNIT) \
  X(connection_failures_never_show_a_password_from_the_string_or_the_environment, UNIT) \
  X(no_secret_appears_in_errors_or_metrics_after_a_reconnect, DB)            \
  X(wrong_passwords_from_any_source_are_never_shown, DB)                     \
  /* the embedded cluster */                                                 \
  X(cluster_starts_privately_on_a_unix_socket_only_and_stops, DB)            \
  X(cluster_recovers_after_the_postmaster_is_killed, DB)                     \
  X(two_processes_starting_the_cluster_at_once_do_not_race, DB)              \
  X(missing_postgresql_binaries_name_the_setup_command, DB)                  \
  X(missing_pgvector_names_the_setup_command, DB)                            \
  X(a_home_too_long_for_a_socket_path_is_refused_clearly, UNIT)              \
  X(a_home_with_a_comma_or_a_control_character_is_refused_clearly, UNIT)     \
  X(cluster_starts_in_a_home_with_spaces_quotes_backslashes_and_dollars, DB) \
  X(cluster_refuses_symlinks_and_strangers_in_and_above_its_home, DB)        \
  X(cluster_names_the_directory_its_user_cannot_enter, DB)                   \
  X(cluster_run_by_a_non_root_user_wants_a_home_of_its_own, DB)              \
  X(a_db_start_killed_during_initdb_leaves_no_initdb_and_the_next_works, DB) \
  /* the command-line tool */                                                \
  X(cli_help_and_usage_errors_exit_1, UNIT)                                  \
  X(cli_operational_errors_exit_2_without_secrets, DB)                       \
  X(cli_init_ingest_search_json_fields_are_stable, DB)                       \
  X(cli_json_output_shapes_match_the_golden_files, DB)                      \
  X(cli_ingest_exits_2_when_nothing_lands_and_0_for_empty_input, DB)         \
  X(cli_migrate_status_lists_applied_and_pending, DB)                        \
  X(cli_db_commands_control_an_embedded_cluster, DB)                         \
  X(cli_delete_stats_cleanup_metrics_json_fields_are_stable, DB)            \
  X(cli_ingest_memory_does_not_grow_with_the_input, DB)                      \
  X(cli_human_output_escapes_terminal_controls_that_json_keeps_verbatim, DB) \
  X(cli_db_refuses_a_home_with_terminal_controls_quoting_it_escaped, UNIT)          \
  X(cli_multi_line_library_messages_stay_on_one_prefixed_line, UNIT)         \
  X(cli_stderr_gets_no_server_notice_sent_while_connecting, DB)             \
  X(cli_usage_errors_under_json_print_the_error_object_on_stdout, UNIT)      \
  X(cli_min_age_and_since_bounds_are_usage_errors_past_the_maximum, DB)      \
  X(cli_write_errors_on_stdout_exit_2_with_a_message, DB)                   \
  SERVE_TESTS(X)

/* `embstore serve` through real sockets (built with the server only). */
#ifdef EMBSTORE_HAVE_SERVE
#define SERVE_TESTS(X)                                                       \
  X(serve_answers_every_route_as_the_tool_does, DB)                          \
  X(serve_refuses_what_it_cannot_take_before_reading_the_body, DB)           \
  X(serve_tokens_give_roles_and_tenants_see_only_their_workspaces, DB)       \
  X(serve_refuses_to_start_where_it_would_be_unsafe, DB)                     \
  X(serve_readyz_answers_503_until_the_store_exists, DB)                     \
  X(serve_openapi_lists_exactly_the_routes_it_serves, DB)                    \
  X(serve_cuts_slow_and_idle_clients_and_answers_others_meanwhile, DB)       \
  X(serve_answers_a_quick_503_beyond_max_connections, DB)                    \
  X(serve_sighup_reloads_the_tokens_and_keeps_them_when_the_file_is_bad, DB) \
  X(serve_sigterm_finishes_the_requests_in_flight_and_exits_0, DB)           \
  X(serve_50_concurrent_clients_leave_exact_counts, DB)                      \
  X(serve_answers_503_while_postgres_is_down_and_recovers_without_a_restart, DB) \
  X(serve_streams_a_large_ndjson_upload_in_bounded_memory, DB)            \
  X(serve_ids_longer_than_a_short_buffer_reach_their_own_document, DB)     \
  X(serve_tenant_ingest_cannot_write_over_another_workspaces_document, DB) \
  X(serve_tenant_errors_never_name_another_tenants_document, DB)          \
  X(serve_reads_member_names_written_with_escapes, DB)                    \
  X(serve_answers_head_where_it_answers_get, DB)                          \
  X(serve_lists_filters_and_deletes_by_filter_as_the_tool_does, DB)       \
  X(serve_exports_as_the_tool_does_across_pages_and_within_a_tenant, DB)   \
  X(embed_provider_fills_the_vectors_of_documents_and_chunks, DB)          \
  X(embed_provider_waits_as_long_as_retry_after_says_on_429, DB)           \
  X(embed_provider_5xx_is_retried_then_fails_only_its_own_documents, DB)   \
  X(embed_provider_that_hangs_fails_after_the_timeout_and_others_go_on, DB) \
  X(embed_provider_vector_of_the_wrong_dimension_names_model_and_both, DB) \
  X(embed_provider_key_missing_or_wrong_is_final_and_never_shown, DB)      \
  X(embed_text_queries_search_by_vector_and_hybrid_through_the_provider, DB) \
  X(embed_models_are_counted_and_a_query_of_another_model_is_refused, DB) \
  X(embed_cli_and_serve_embed_through_the_configured_provider, DB)        \
  X(mcp_stdio_speaks_the_protocol_and_every_tool_works_on_the_store, DB)  \
  X(mcp_refuses_a_message_beyond_its_bound_and_keeps_serving, DB)          \
  X(mcp_read_only_lists_and_runs_only_the_tools_that_never_write, DB)      \
  X(mcp_two_servers_storing_into_one_store_at_once_lose_nothing, DB)       \
  X(mcp_the_official_typescript_sdk_calls_every_tool_over_stdio, DB)      \
  X(mcp_the_inspector_cli_lists_the_tools_and_calls_one, DB)              \
  X(mcp_with_a_provider_stores_texts_and_searches_hybrid, DB)              \
  X(mcp_over_streamable_http_serves_the_sdk_behind_tokens, DB)          \
  X(caches_of_two_servers_see_each_others_and_plain_sql_writes_at_once, DB) \
  X(serve_reads_from_the_replica_and_reports_it_in_stats_and_metrics, DB) \
  X(a_cache_that_starts_listening_forgets_what_it_stored_before, DB)      \
  X(a_lost_listening_connection_invalidates_everything_and_reconnects, DB) \
  X(notifications_name_the_sources_a_statement_touched, DB)               \
  X(a_search_right_after_another_sessions_commit_never_gets_the_old_answer, DB)
#else
#define SERVE_TESTS(X)
#endif

#endif
