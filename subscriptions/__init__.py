"""FHIR Subscriptions: R4 criteria subscriptions and the R4 topic-based backport.

https://hl7.org/fhir/R4/subscription.html and the Subscriptions R5 Backport IG
(https://hl7.org/fhir/uv/subscriptions-backport/), R4 flavour.

- `model`: a stored Subscription read into what matching and delivery need, and the
  create/update checks (criteria parsed by the server's search parser, endpoint allow-list).
- `topics`: SubscriptionTopics, defined by Basic resources (see the module).
- `matching`: which active subscriptions a written version matches, evaluated in memory on
  the version's index values, grouped by type and by token value.
- `outbox`: the trigger that appends one entry per matching subscription to its outbox queue
  inside the writing transaction.
- `delivery`: the leader's duty that posts the notifications (rest-hook), in order, with
  retries, the `error` status and recovery; handshakes and heartbeats.
- `notifications`: the notification Bundles and the SubscriptionStatus Parameters.
- `operations`: `$status`, `$events`, `$get-ws-binding-token`; `websocket` the binding.
- `plugin.install(service, options)` wires all of it through the service's seams.
"""
