"""Error pages: problem+json under /api/, HTML elsewhere."""

from django.http import HttpResponseBadRequest
from django.shortcuts import render

from loyaltysms.problems import problem_json_response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    if _is_api(request):
        return problem_json_response(404, "No such resource.")
    return render(request, "404.html", status=404)


def server_error(request):
    if _is_api(request):
        return problem_json_response(500, "Something went wrong on our side; it has been logged.")
    return render(request, "500.html", status=500)


def nul_refusing_middleware(get_response):
    """A query string with a NUL character is refused (400) before any view: PostgreSQL can't
    hold one in a text value, so a search for it would fail as a server error."""

    def middleware(request):
        if any("\x00" in value for values in request.GET.lists() for value in values[1]):
            detail = "A query parameter contains a NUL character."
            if _is_api(request):
                return problem_json_response(400, detail)
            return HttpResponseBadRequest(detail)
        return get_response(request)

    return middleware
