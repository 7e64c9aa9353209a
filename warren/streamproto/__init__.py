"""The RabbitMQ Stream protocol front end (``rabbitmq_stream``'s port 5552): codec, session,
listener, beside the AMQP, STOMP and MQTT front ends and, like them, importing none of them."""
