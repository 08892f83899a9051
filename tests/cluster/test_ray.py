"""`cluster.ray`: one way into Ray for flows and serving."""

from __future__ import annotations

import os

import pytest

from cluster.ray import ClusterUnreachable, Connection, ray_session


def test_an_address_that_cannot_be_joined_is_one_error_naming_it_and_the_fix():
    before = dict(os.environ)
    with pytest.raises(ClusterUnreachable) as caught, ray_session("not-an-address"):
        pass
    message = str(caught.value)
    assert "Ray cluster at not-an-address" in message and "Fix: check the address" in message
    import ray

    assert not ray.is_initialized()
    assert dict(os.environ) == before  # what importing Ray exported is undone


@pytest.mark.slow  # starts a local Ray
def test_a_session_starts_a_local_ray_shares_it_inside_and_leaves_nothing_behind():
    import ray

    before = dict(os.environ)
    with ray_session() as outer:
        assert outer == Connection(initialised=True, local=True)
        assert ray.cluster_resources()["CPU"] == (os.cpu_count() or 1)
        with ray_session() as inner:
            assert inner == Connection(initialised=False, local=False)
        assert ray.is_initialized()  # the inner session left the outer one's Ray running
    assert not ray.is_initialized()
    assert dict(os.environ) == before
