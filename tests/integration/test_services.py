"""The service fixtures start real servers: redis over RESP, versitygw over HTTP via boto3."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.fixtures.services import INSTALL_HINT, RedisServer, S3Server, ServiceError, find_versitygw

MiB = 1024 * 1024


# --------------------------------------------------------------------------- redis


def test_redis_set_get(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    assert r.set("shard:0", b"done")
    assert r.get("shard:0") == b"done"
    assert r.incr("counter") == 1
    r.set("leftover", 1)


def test_redis_url_is_flushed_before_each_test(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_url == redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_redis_kill_and_restart(redis_url: str, redis_server: RedisServer) -> None:
    r = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    r.set("k", "v")
    pid = redis_server.pid

    redis_server.kill()
    assert not redis_server.is_running()
    with pytest.raises(redis.ConnectionError):
        r.ping()

    redis_server.restart()
    assert redis_server.pid != pid
    assert redis_server.url == redis_url  # same port
    assert r.ping()
    assert r.get("k") is None  # nothing is persisted
    redis_server.kill()  # left down on purpose: the next redis_url must bring it back


def test_redis_url_restarts_a_killed_server(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_server.is_running()
    assert redis.Redis.from_url(redis_url).ping()


def test_redis_password(redis_server_factory) -> None:
    secured = redis_server_factory(password="s3cret-pass")
    assert secured.url == f"redis://:s3cret-pass@127.0.0.1:{secured.port}/0"
    assert redis.Redis.from_url(secured.url).set("a", 1)

    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(secured.url_without_password).get("a")
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        redis.Redis.from_url(f"redis://:wrong@127.0.0.1:{secured.port}/0").ping()

    plain = redis_server_factory()
    assert plain.port != secured.port
    assert redis.Redis.from_url(plain.url).get("a") is None


def test_factory_instances_are_stopped_after_the_test(redis_server_factory) -> None:
    server = redis_server_factory()
    server.close()
    assert not server.is_running()
    assert not server.tmpdir.exists()


def test_missing_binary_is_an_error_that_says_how_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    with pytest.raises(ServiceError, match="make services"):
        RedisServer()
    monkeypatch.delenv("VERSITYGW_BIN", raising=False)
    monkeypatch.setenv("DATASETJOB_BUILD_CACHE", str(tmp_path))
    with pytest.raises(ServiceError) as err:
        find_versitygw()
    assert INSTALL_HINT in str(err.value)


# --------------------------------------------------------------------------- S3


def test_s3_put_get_head_list(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")

    s3.put_object(
        Bucket=s3_bucket,
        Key="run/shard-00000.parquet",
        Body=b"parquet-bytes",
        ContentType="application/vnd.apache.parquet",
        Metadata={"rows": "42"},
    )
    for i in range(1, 5):
        s3.put_object(Bucket=s3_bucket, Key=f"run/shard-{i:05d}.parquet", Body=b"x" * i)
    s3.put_object(Bucket=s3_bucket, Key="other/_manifest.json", Body=b"{}")

    got = s3.get_object(Bucket=s3_bucket, Key="run/shard-00000.parquet")
    assert got["Body"].read() == b"parquet-bytes"
    head = s3.head_object(Bucket=s3_bucket, Key="run/shard-00000.parquet")
    assert head["ContentLength"] == len(b"parquet-bytes")
    assert head["ContentType"] == "application/vnd.apache.parquet"
    assert head["Metadata"] == {"rows": "42"}
    assert (
        s3.get_object(Bucket=s3_bucket, Key="run/shard-00000.parquet", Range="bytes=0-6")["Body"].read() == b"parquet"
    )

    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="run/")
    assert [o["Key"] for o in listed["Contents"]] == [f"run/shard-{i:05d}.parquet" for i in range(5)]
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix="run/", PaginationConfig={"PageSize": 2})
    )
    assert [len(p["Contents"]) for p in pages] == [2, 2, 1]
    top = s3.list_objects_v2(Bucket=s3_bucket, Delimiter="/")
    assert sorted(p["Prefix"] for p in top["CommonPrefixes"]) == ["other/", "run/"]

    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=s3_bucket, Key="run/missing")
    assert err.value.response["Error"]["Code"] == "404"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=s3_bucket, Key="run/missing")


def test_s3_multipart_upload(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    key = "big/shard.bin"
    parts_data = [b"a" * (5 * MiB), b"b" * (5 * MiB), b"c" * 1234]
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    parts = []
    for number, data in enumerate(parts_data, start=1):
        etag = s3.upload_part(Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    done = s3.complete_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert done["ETag"].strip('"').endswith("-3")
    body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert body == b"".join(parts_data)

    # an aborted upload leaves nothing behind
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key="big/aborted.bin")["UploadId"]
    s3.upload_part(Bucket=s3_bucket, Key="big/aborted.bin", UploadId=upload_id, PartNumber=1, Body=b"z")
    assert len(s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])) == 1
    s3.abort_multipart_upload(Bucket=s3_bucket, Key="big/aborted.bin", UploadId=upload_id)
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=s3_bucket, Prefix="big/")["KeyCount"] == 1

    # the managed transfer (threads + multipart) used by upload_file/upload_fileobj
    from boto3.s3.transfer import TransferConfig

    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    payload = os.urandom(11 * MiB)
    s3.upload_fileobj(io.BytesIO(payload), s3_bucket, "big/managed.bin", Config=cfg)
    out = io.BytesIO()
    s3.download_fileobj(s3_bucket, "big/managed.bin", out, Config=cfg)
    assert out.getvalue() == payload


def test_s3_copy_overwrite_delete(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="tmp/part-0", Body=b"v1")
    s3.copy_object(Bucket=s3_bucket, Key="final/part-0", CopySource={"Bucket": s3_bucket, "Key": "tmp/part-0"})
    assert s3.get_object(Bucket=s3_bucket, Key="final/part-0")["Body"].read() == b"v1"

    s3.put_object(Bucket=s3_bucket, Key="final/part-0", Body=b"v2")  # plain PUT overwrites
    assert s3.get_object(Bucket=s3_bucket, Key="final/part-0")["Body"].read() == b"v2"

    s3.delete_object(Bucket=s3_bucket, Key="tmp/part-0")
    s3.delete_object(Bucket=s3_bucket, Key="tmp/never-existed")  # S3: deleting a missing key succeeds
    assert s3.list_objects_v2(Bucket=s3_bucket, Prefix="tmp/")["KeyCount"] == 0

    keys = [f"batch/{i}" for i in range(10)]
    for key in keys:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b".")
    resp = s3.delete_objects(Bucket=s3_bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert not resp.get("Errors")
    assert s3.list_objects_v2(Bucket=s3_bucket, Prefix="batch/")["KeyCount"] == 0


def test_s3_conditional_writes(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    first = s3.put_object(Bucket=s3_bucket, Key="claim", Body=b"worker-1", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=s3_bucket, Key="claim", Body=b"worker-2", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"

    s3.put_object(Bucket=s3_bucket, Key="claim", Body=b"worker-1b", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=s3_bucket, Key="claim", Body=b"stale", IfMatch=first["ETag"])
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=s3_bucket, Key="claim")["Body"].read() == b"worker-1b"

    # racing create-if-absent: exactly one writer wins
    def claim(i: int) -> bool:
        try:
            s3.put_object(Bucket=s3_bucket, Key="race", Body=str(i).encode(), IfNoneMatch="*")
            return True
        except ClientError as exc:
            assert exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict")
            return False

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(claim, range(16))) == 1


def test_s3_bucket_is_fresh_and_unique(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0
    assert s3_bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=s3_bucket)
    assert err.value.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")


def test_s3_presigned_url(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="p.txt", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "p.txt"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"presigned"


def test_s3_env_configures_a_plain_boto3_client(s3_server: S3Server, s3_bucket: str) -> None:
    """A child process given only .env() reaches the server (AWS_ENDPOINT_URL etc.)."""
    s3_server.client().put_object(Bucket=s3_bucket, Key="from-parent", Body=b"hi")
    code = (
        "import boto3, json, sys\n"
        "s3 = boto3.client('s3')\n"
        "b = sys.argv[1]\n"
        "s3.put_object(Bucket=b, Key='from-child', Body=b'ok')\n"
        "print(json.dumps(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=b)['Contents'])))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(s3_server.env())
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    out = subprocess.run(
        [sys.executable, "-c", code, s3_bucket], env=env, check=True, capture_output=True, text=True, timeout=60
    )
    assert json.loads(out.stdout) == ["from-child", "from-parent"]


def test_s3_kill_and_restart_keeps_objects(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client(retries={"max_attempts": 1}, connect_timeout=1)
    s3.put_object(Bucket=s3_bucket, Key="durable", Body=b"still here")
    s3_server.kill()
    with pytest.raises(EndpointConnectionError):
        s3.list_objects_v2(Bucket=s3_bucket)
    s3_server.restart()
    assert s3.get_object(Bucket=s3_bucket, Key="durable")["Body"].read() == b"still here"
