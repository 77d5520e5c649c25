"""Request/response over MQTT 5: the requester sets Response Topic and Correlation Data; the responder answers on
the Response Topic and echoes the Correlation Data."""

from v5_common import Client, PacketTypes, addr, check, fail, props, unique

host, port = addr()
service = unique("v5rr/service")
reply_to = unique("v5rr/reply")

responder = Client(unique("v5rr-responder"))
responder.connect(host, port)
responder.subscribe(service)

requester = Client(unique("v5rr-requester"))
requester.connect(host, port)
requester.subscribe(reply_to)

for n, corr in enumerate([b"\x00\x01req-1", b"req-2\xff"]):
    p = props(PacketTypes.PUBLISH, ResponseTopic=reply_to, CorrelationData=corr, ContentType="text/plain")
    p.UserProperty = [("n", str(n))]
    requester.publish(service, f"ping {n}".encode(), properties=p)
    req = responder.get()
    if req is None:
        fail("the responder got no request")
    check(req.properties.ResponseTopic == reply_to, f"Response Topic forwarded: {req.properties}")
    check(req.properties.CorrelationData == corr, f"Correlation Data forwarded: {req.properties}")
    check(req.properties.ContentType == "text/plain", f"Content Type forwarded: {req.properties}")
    check(req.properties.UserProperty == [("n", str(n))], f"User Property forwarded: {req.properties}")
    answer = props(PacketTypes.PUBLISH, CorrelationData=req.properties.CorrelationData)
    responder.publish(req.properties.ResponseTopic, b"pong " + req.payload, properties=answer)
    rsp = requester.get()
    if rsp is None:
        fail("the requester got no response")
    check(rsp.topic == reply_to, f"response topic {rsp.topic}")
    check(rsp.properties.CorrelationData == corr, f"correlation echoed: {rsp.properties}")
    check(rsp.payload == f"pong ping {n}".encode(), f"payload {rsp.payload!r}")

responder.disconnect()
requester.disconnect()
print("OK request/response: 2 round trips with Response Topic and Correlation Data", flush=True)
