/* One packet to many listeners in one call: RTP header, SRTP protect in place, sendto.
 *
 * The engine's tick sends the same Opus packet to every listener of a channel. In Python each
 * listener's packet cost about 18 µs of interpreter work on top of libsrtp and the system call
 * (docs/PERFORMANCE.md). `send_burst` does the whole per-listener loop here.
 *
 * libsrtp is not linked: the caller passes the address of `srtp_protect` from pylibsrtp's
 * binding (libsrtp 2's `int srtp_protect(srtp_t, void *, int *)`) and the session object that
 * owns the context, which a stream keeps alive. The socket is the ICE pair's, duplicated: when
 * the ICE transport closes its own descriptor (a peer gone, consent lost), the stream still
 * writes to the same socket until the Python side closes it, never to a descriptor number the
 * process has since reused for something else. A transport without a socket of its own (a
 * relayed TURN candidate wraps every datagram for the TURN server) is sent through with its
 * `sendto` method instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MTU 1500     /* the packet buffer; a 20 ms Opus packet (at most 1275 bytes) fits */
#define TAG_ROOM 16  /* the longest SRTP authentication tag (AES-GCM) */

typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

typedef struct {
    PyObject_HEAD
    protect_fn protect;
    void *ctx;
    PyObject *owner;  /* keeps the libsrtp context alive */
    PyObject *holder; /* keeps the socket's owner (the ICE transport) referenced */
    PyObject *via;    /* a transport without a socket of its own (TURN): its sendto method */
    PyObject *via_to; /* and the address to pass it */
    int fd;           /* our duplicate of the ICE socket; -1: closed */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int hlen;
    unsigned char pt;
    int marker; /* the next packet starts a talkspurt */
    uint16_t seq;
    uint32_t origin;
    unsigned long long packets, octets, wire_bytes, refused, send_errors;
    int last_status;
    _Alignas(16) unsigned char buf[MTU];
} RtpStream;

static PyTypeObject RtpStreamType;

/* 1: sent; 0: protected but the socket did not take it (a lost packet); -1: not sent. */
static int send_one(RtpStream *s, const unsigned char *payload, Py_ssize_t size, uint32_t pts)
{
    if ((s->fd < 0 && s->via == NULL) || s->hlen + size + TAG_ROOM > MTU)
        return -1;
    uint32_t ts = s->origin + pts;
    unsigned char *b = s->buf;
    b[2] = (unsigned char)(s->seq >> 8);
    b[3] = (unsigned char)s->seq;
    b[4] = (unsigned char)(ts >> 24);
    b[5] = (unsigned char)(ts >> 16);
    b[6] = (unsigned char)(ts >> 8);
    b[7] = (unsigned char)ts;
    b[1] = s->marker ? (unsigned char)(s->pt | 0x80) : s->pt;
    memcpy(b + s->hlen, payload, (size_t)size);
    int len = s->hlen + (int)size;
    /* In place: the header is authenticated, not encrypted, so it stays valid for the next. */
    int status = s->protect(s->ctx, b, &len);
    if (status) {
        s->refused++;
        s->last_status = status;
        return -1;
    }
    /* libsrtp has used this sequence number: it must advance whatever the socket does. */
    s->seq++;
    s->marker = 0;
    s->packets++;
    s->octets += (unsigned long long)size;
    s->wire_bytes += (unsigned long long)len;
    if (s->via != NULL) {
        /* Held for the call: the Python it runs could close this very stream. */
        PyObject *via = Py_NewRef(s->via), *to = Py_NewRef(s->via_to);
        PyObject *r = PyObject_CallFunction(via, "y#O", (const char *)b, (Py_ssize_t)len, to);
        Py_DECREF(via);
        Py_DECREF(to);
        if (r == NULL) {
            PyErr_Clear(); /* one listener's transport failing must not stop the burst */
            s->send_errors++;
            return 0;
        }
        Py_DECREF(r);
        return 1;
    }
    if (sendto(s->fd, b, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&s->addr, s->addrlen) < 0) {
        s->send_errors++;
        return 0;
    }
    return 1;
}

static void close_fd(RtpStream *self)
{
    if (self->fd >= 0)
        close(self->fd);
    self->fd = -1;
    Py_CLEAR(self->via);
    Py_CLEAR(self->via_to);
}

static PyObject *RtpStream_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    RtpStream *self = (RtpStream *)PyType_GenericNew(type, args, kwds);
    if (self != NULL)
        self->fd = -1; /* zeroed memory would mean fd 0 */
    return (PyObject *)self;
}

static int RtpStream_init(RtpStream *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"protect", "context", "owner", "header", "seq", "origin", NULL};
    unsigned long long protect, context;
    PyObject *owner;
    Py_buffer header;
    unsigned int seq, origin;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KKOy*II", kwlist, &protect, &context, &owner,
                                     &header, &seq, &origin))
        return -1;
    if (header.len < 12 || header.len > MTU - TAG_ROOM) {
        PyBuffer_Release(&header);
        PyErr_SetString(PyExc_ValueError, "an RTP header is 12 bytes or more");
        return -1;
    }
    if (!protect || !context) {
        PyBuffer_Release(&header);
        PyErr_SetString(PyExc_ValueError, "protect and context must be addresses");
        return -1;
    }
    memcpy(self->buf, header.buf, (size_t)header.len);
    self->hlen = (int)header.len;
    PyBuffer_Release(&header);
    self->pt = self->buf[1] & 0x7f;
    self->protect = (protect_fn)(uintptr_t)protect;
    self->ctx = (void *)(uintptr_t)context;
    Py_XSETREF(self->owner, Py_NewRef(owner));
    close_fd(self);
    self->marker = 1;
    self->seq = (uint16_t)seq;
    self->origin = (uint32_t)origin;
    return 0;
}

static void RtpStream_dealloc(RtpStream *self)
{
    close_fd(self);
    Py_XDECREF(self->owner);
    Py_XDECREF(self->holder);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *RtpStream_route(RtpStream *self, PyObject *args)
{
    int fd, port;
    unsigned int scope_id;
    const char *host;
    PyObject *holder;
    if (!PyArg_ParseTuple(args, "isiIO", &fd, &host, &port, &scope_id, &holder))
        return NULL;
    if (fd < 0 || port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "fd or port out of range");
        return NULL;
    }
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    socklen_t addrlen;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        addrlen = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        v6->sin6_scope_id = scope_id;
        addrlen = sizeof *v6;
    } else {
        PyErr_Format(PyExc_ValueError, "not a numeric address: %s", host);
        return NULL;
    }
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    close_fd(self);
    self->addr = addr;
    self->addrlen = addrlen;
    self->fd = own;
    Py_XSETREF(self->holder, Py_NewRef(holder));
    Py_RETURN_NONE;
}

static PyObject *RtpStream_route_transport(RtpStream *self, PyObject *args)
{
    PyObject *holder, *address;
    if (!PyArg_ParseTuple(args, "OO", &holder, &address))
        return NULL;
    PyObject *via = PyObject_GetAttrString(holder, "sendto");
    if (via == NULL)
        return NULL;
    close_fd(self);
    self->via = via;
    self->via_to = Py_NewRef(address);
    Py_XSETREF(self->holder, Py_NewRef(holder));
    Py_RETURN_NONE;
}

static PyObject *RtpStream_close(RtpStream *self, PyObject *Py_UNUSED(ignored))
{
    close_fd(self);
    Py_CLEAR(self->holder);
    Py_RETURN_NONE;
}

static PyObject *RtpStream_send(RtpStream *self, PyObject *args)
{
    Py_buffer payload;
    unsigned long long pts;
    if (!PyArg_ParseTuple(args, "y*K", &payload, &pts))
        return NULL;
    int sent = send_one(self, payload.buf, payload.len, (uint32_t)pts);
    PyBuffer_Release(&payload);
    return PyLong_FromLong(sent);
}

static PyMethodDef RtpStream_methods[] = {
    {"route", (PyCFunction)RtpStream_route, METH_VARARGS,
     "route(fd, host, port, scope_id, holder): send on socket fd to a numeric address; "
     "holder (the socket's transport) is kept referenced."},
    {"route_transport", (PyCFunction)RtpStream_route_transport, METH_VARARGS,
     "route_transport(holder, address): send with holder.sendto(packet, address), for a "
     "transport without a socket of its own (TURN)."},
    {"close", (PyCFunction)RtpStream_close, METH_NOARGS, "Send nothing more."},
    {"send", (PyCFunction)RtpStream_send, METH_VARARGS,
     "send(payload, pts) -> 1 sent, 0 lost at the socket, -1 not sent (closed, too big, "
     "refused by libsrtp)."},
    {NULL},
};

static PyMemberDef RtpStream_members[] = {
    {"packets", T_ULONGLONG, offsetof(RtpStream, packets), READONLY, "packets protected"},
    {"octets", T_ULONGLONG, offsetof(RtpStream, octets), READONLY, "payload octets protected"},
    {"wire_bytes", T_ULONGLONG, offsetof(RtpStream, wire_bytes), READONLY, "SRTP bytes"},
    {"refused", T_ULONGLONG, offsetof(RtpStream, refused), READONLY, "refused by libsrtp"},
    {"send_errors", T_ULONGLONG, offsetof(RtpStream, send_errors), READONLY,
     "protected but not taken by the socket"},
    {"last_status", T_INT, offsetof(RtpStream, last_status), READONLY, "libsrtp's last error"},
    {"seq", T_USHORT, offsetof(RtpStream, seq), READONLY, "the next sequence number"},
    {"fd", T_INT, offsetof(RtpStream, fd), READONLY, "the socket, -1 when closed"},
    {NULL},
};

static PyTypeObject RtpStreamType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "router.media._rtp_burst.RtpStream",
    .tp_doc = PyDoc_STR("RtpStream(protect, context, owner, header, seq, origin): one "
                        "listener's SRTP-protected RTP stream."),
    .tp_basicsize = sizeof(RtpStream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = RtpStream_new,
    .tp_init = (initproc)RtpStream_init,
    .tp_dealloc = (destructor)RtpStream_dealloc,
    .tp_methods = RtpStream_methods,
    .tp_members = RtpStream_members,
};

static PyObject *send_burst(PyObject *module, PyObject *args)
{
    PyObject *list;
    Py_buffer payload;
    unsigned long long pts;
    if (!PyArg_ParseTuple(args, "O!y*K", &PyList_Type, &list, &payload, &pts))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyObject_TypeCheck(PyList_GET_ITEM(list, i), &RtpStreamType)) {
            PyBuffer_Release(&payload);
            PyErr_SetString(PyExc_TypeError, "send_burst takes a list of RtpStream");
            return NULL;
        }
    }
    /* The GIL stays held: a decoder thread taking it meanwhile could hold the tick up for a
     * whole switch interval (5 ms) when the burst ends. */
    long sent = 0;
    /* (A TURN transport's sendto runs Python: the list's length is read again each time.) */
    for (Py_ssize_t i = 0; i < n && i < PyList_GET_SIZE(list); i++)
        sent += send_one((RtpStream *)PyList_GET_ITEM(list, i), payload.buf, payload.len,
                         (uint32_t)pts) == 1;
    PyBuffer_Release(&payload);
    return PyLong_FromLong(sent);
}

static PyMethodDef module_methods[] = {
    {"send_burst", send_burst, METH_VARARGS,
     "send_burst(streams, payload, pts) -> packets the sockets took: one packet to every "
     "stream of the list."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "router.media._rtp_burst",
    .m_doc = PyDoc_STR("One RTP packet to many SRTP streams in one call."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__rtp_burst(void)
{
    if (PyType_Ready(&RtpStreamType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RtpStream", (PyObject *)&RtpStreamType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
