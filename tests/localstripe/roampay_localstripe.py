"""localstripe, taught the few things real Stripe does that roampay's end-to-end tests
rely on and localstripe does not (DESIGN.md, "Payments true to Stripe"). The product
sends real Stripe's requests unchanged; only this peer is adjusted:

- a PaymentIntent whose card was declined takes a new PaymentMethod and can be
  confirmed again (localstripe keeps the failed charge and refuses the second confirm);
- `receipt_email` is accepted on PaymentIntent creation and kept on the object
  (localstripe answers 400 "Unexpected receipt_email");
- `reason` is accepted on refunds and kept on the object (localstripe answers 400
  "Unexpected reason");
- a publishable key may read a PaymentIntent with its client secret
  (`GET /v1/payment_intents/{id}?client_secret=…`), as Stripe.js does in the browser
  (localstripe accepts `pk_` keys only in a few POST bodies);
- paying an invoice with a card that declines announces the failed attempt
  (`invoice.payment_failed`) and makes a renewal's subscription `past_due`, as Stripe
  does (localstripe reports only asynchronous failures, e.g. SEPA);
- `POST /v1/checkout/sessions` answers a Checkout Session (localstripe has none), so
  that billing's first step runs against this peer too; what the customer then does on
  the Checkout page (a card, a subscription) the tests do through localstripe's API.
  The exact form Stripe receives is checked against wiremock, not here.

Run with the virtualenv's Python: `python roampay_localstripe.py --port N --from-scratch`.
"""

import re

from aiohttp import web

from localstripe import resources, server

PaymentIntent = resources.PaymentIntent

_update = PaymentIntent._api_update.__func__
_create = PaymentIntent._api_create.__func__


@classmethod
def _api_update(cls, id, **data):
    obj = cls._api_retrieve(id)
    declined = obj.latest_charge is not None and obj.latest_charge.status == 'failed'
    if 'payment_method' in data and declined:
        # Stripe: a new PaymentMethod after a decline makes the PaymentIntent
        # `requires_confirmation` again.
        obj.latest_charge = None
    return _update(cls, id, **data)


@classmethod
def _api_create(cls, receipt_email=None, **data):
    obj = _create(cls, **data)
    obj.receipt_email = receipt_email
    return obj


Refund = resources.Refund
_refund_init = Refund.__init__


def _refund(self, reason=None, **kwargs):
    _refund_init(self, **kwargs)
    self.reason = reason


_get_api_key = server.get_api_key


def get_api_key(request):
    key = _get_api_key(request)
    if key is not None:
        return key
    auth = request.headers.get('Authorization', '').split(' ')
    read = re.match(r'^/v1/payment_intents/(\w+)$', request.path)
    if (request.method == 'GET' and read and len(auth) == 2 and auth[0] == 'Bearer'
            and auth[1].startswith('pk_')):
        try:
            pi = PaymentIntent._api_retrieve(read.group(1))
        except Exception:
            return None
        if request.query.get('client_secret') == pi.client_secret:
            return auth[1]
    return None


Invoice = resources.Invoice


@web.middleware
async def announce_failed_invoice_payments(request, handler):
    response = await handler(request)
    paid = re.match(r'^/v1/invoices/(\w+)/pay$', request.path)
    if request.method == 'POST' and paid and response.status == 200:
        invoice = Invoice._api_retrieve(paid.group(1))
        pi = invoice.payment_intent and PaymentIntent._api_retrieve(invoice.payment_intent)
        if pi and pi.latest_charge is not None and pi.latest_charge.status == 'failed':
            invoice._on_payment_failure_now()
    return response


_checkout_sessions = {}


async def create_checkout_session(request):
    data = await server.get_post_data(request) or {}
    id = 'cs_test_%d' % (len(_checkout_sessions) + 1)
    session = dict(data, id=id, object='checkout.session', status='open',
                   url='https://checkout.stripe.com/c/pay/' + id)
    _checkout_sessions[id] = session
    return server.json_response(session)


server.app.router.add_post('/v1/checkout/sessions', create_checkout_session)
server.app.middlewares.append(announce_failed_invoice_payments)
server.get_api_key = get_api_key
PaymentIntent._api_update = _api_update
Refund.__init__ = _refund
PaymentIntent._api_create = _api_create

if __name__ == '__main__':
    server.start()
