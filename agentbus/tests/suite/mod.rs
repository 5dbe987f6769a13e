//! The transport suite: one set of behaviour tests, generic over the backend, instantiated for
//! the in-memory and the Redis transport by `transport_suite!`.

pub mod crash;
pub mod delivery;
pub mod levels;
pub mod settle;
pub mod tasks;
pub mod work;

/// Expands to one `#[tokio::test]` per suite case, each with a fresh harness from `$make`.
#[macro_export]
macro_rules! transport_suite {
    ($make:expr) => {
        $crate::transport_suite!(@cases $make;
            delivery::lease_renewal_and_claim,
            delivery::dedupe_drops_resends,
            delivery::scheduled_delivery_and_cancel,
            delivery::ttl_expiry_dead_letters,
            delivery::poison_message_dead_letters_then_redrives,
            delivery::per_key_order_under_concurrency,
            delivery::max_in_flight_backpressure,
            levels::queue_levels_follow_waiting_in_flight_and_dead,
            crash::crashed_consumer_work_is_redelivered_once,
            crash::crash_loop_dead_letters_by_delivery_count,
            crash::panicking_handler_is_retried,
            settle::completion_settles_its_message_once,
            settle::result_waits_see_finished_and_duplicate_tasks,
            settle::live_feed_delivers_each_event_once,
            tasks::lifecycle_with_updates_stream,
            tasks::cancellation_reaches_the_handler,
            tasks::input_required_round_trip,
            tasks::request_reply_and_timeout,
            tasks::registry_discovery_and_expiry,
            tasks::shared_context_latest_for_late_joiners,
            tasks::three_agent_chain_reads_back_as_tree,
            work::worker_retries_then_dead_letters,
            work::push_configs_are_bounded_per_task,
        );
    };
    (@cases $make:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $make;
                suite::$module::$case(&harness).await;
            }
        )*
    };
}
