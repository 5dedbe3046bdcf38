"""The pipeline's roles: intake admits, transform converts, route chooses, deliver writes.

    intake.py         journal + queue + receipt for each inbound message (the ACK's promise)
    intake_ports.py   what an input connector is given beside admission
    journal_ports.py  the connector ports over the journal's repositories
    transform.py      a batch of messages converted to FHIR by their format, journaled, routed
    route.py          which destinations a converted message goes to
    history.py        what the engine last wrote of a resource (mapping `keep_earlier`)
    deliver.py        a destination's writes and their outcomes: delivered, retry rounds, dead letters
    lanes.py          a destination's order per patient: lanes held, waiting messages, parallel lanes
    retry.py          a destination's retry policy: fast tries, delayed rounds, when to give up
    breaker.py        a destination's circuit breaker
    outcomes.py       the final outcome of a message, for an input that waits on it
    parking.py        messages parked on unmapped codes, and their release
    replay.py         replays requested from the journal

Roles import the store, the transport, formats and mapping below them; nothing below imports them.
"""
