"""One router per resource: auth (login/logout), pages (overview, request list),
requests (a request and its decisions), domains (history, rollback, validation reports)."""
