"""One botocore session for every AWS client a process makes (nodecert.support.awsclients).

A session's loader caches what it parsed (endpoints.json, partitions, the SDK defaults);
clients of one session share it, so a cold start parses each file once, however many
clients are wired. Making a client reads botocore's model files and opens no connection.
"""

from __future__ import annotations

import pytest

pytest.importorskip("botocore")

from nodecert.support.awsclients import make_client


def test_every_client_shares_one_session_and_its_parsed_models(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = "http://127.0.0.1:9"  # Never called.
    dynamodb = make_client("dynamodb", region="eu-west-1", endpoint_url=endpoint)
    pca = make_client("acm-pca", region="eu-west-1", max_attempts=1, endpoint_url=endpoint)
    kms = make_client("kms", region="eu-west-1", max_attempts=2, endpoint_url=endpoint)
    assert dynamodb._loader is pca._loader is kms._loader
    # A fresh session's client would have a loader of its own: the check can tell.
    import botocore.session

    other = botocore.session.get_session().create_client("kms", region_name="eu-west-1")
    assert other._loader is not kms._loader
    # Each client keeps its own attempts on the shared session, the first one counted:
    # max_attempts=1 means no SDK retry under the PCA backend's own (botocore's Config
    # max_attempts would count retries only, and retry once more).
    assert dynamodb.meta.config.retries["total_max_attempts"] == 3
    assert pca.meta.config.retries["total_max_attempts"] == 1
    assert kms.meta.config.retries["total_max_attempts"] == 2
